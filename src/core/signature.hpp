// ECDSA signer recovery for 65-byte r||s||v signatures, with the rules
// Circle's FiatToken enforces on chain (its ECRecover.sol; coinbase/x402
// go/mechanisms/evm/verify_eoa.go): v in {27, 28} and
// low s. A local verifier that may serve without the facilitator must be
// at least as strict as the chain, or it serves for a payment that reverts.
#ifndef X402_SIGNATURE_HPP
#define X402_SIGNATURE_HPP

#include <cstddef>
#include <cstdint>

#include "eip712.hpp"

namespace x402 {

enum class SigStatus {
    ok,
    bad_length,   // not 65 bytes: smart wallet / ERC-6492, not checkable here
    bad_v,        // v not 27 or 28 (0/1 is the raw recovery id)
    high_s,       // s > n/2: the malleable twin, rejected on chain
    bad_rs,       // r or s zero or not below the group order
    no_recovery,  // no public key recovers from this signature
};

// A static human message for a status.
const char *sig_status_message(SigStatus s) noexcept;

// Recovers the signer address of digest from sig (len bytes). The
// libsecp256k1 context is created once and only read afterwards, so this is
// safe from any thread.
SigStatus recover_signer(const Hash32 &digest, const uint8_t *sig, size_t len,
                         Address &signer) noexcept;

}  // namespace x402

#endif
