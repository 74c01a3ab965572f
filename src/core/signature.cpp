#include "signature.hpp"

#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <cstring>

namespace x402 {

namespace {

// n / 2 for secp256k1, big-endian.
constexpr uint8_t half_order[32] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
    0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

const secp256k1_context *context()
{
    // Created once (thread-safe static init) and never destroyed: it is only
    // read after creation, and it must outlive every nginx worker's use.
    static const secp256k1_context *ctx =
        secp256k1_context_create(SECP256K1_CONTEXT_VERIFY);
    return ctx;
}

bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

}  // namespace

const char *sig_status_message(SigStatus s) noexcept
{
    switch (s) {
    case SigStatus::ok:
        return "signature valid";
    case SigStatus::bad_length:
        return "signature is not 65 bytes (smart wallet or ERC-6492): "
               "only the facilitator can check it";
    case SigStatus::bad_v:
        return "signature v must be 27 or 28";
    case SigStatus::high_s:
        return "signature s is above n/2 (high-s form, rejected on chain)";
    case SigStatus::bad_rs:
        return "signature r or s is zero or not below the curve order";
    case SigStatus::no_recovery:
        return "no public key recovers from the signature";
    }
    return "signature invalid";
}

SigStatus recover_signer(const Hash32 &digest, const uint8_t *sig, size_t len,
                         Address &signer) noexcept
{
    if (len != 65) {
        return SigStatus::bad_length;
    }
    uint8_t v = sig[64];
    if (v != 27 && v != 28) {
        return SigStatus::bad_v;
    }
    if (std::memcmp(sig + 32, half_order, 32) > 0) {
        return SigStatus::high_s;
    }
    if (all_zero(sig, 32) || all_zero(sig + 32, 32)) {
        return SigStatus::bad_rs;
    }
    const secp256k1_context *ctx = context();
    if (ctx == nullptr) {
        return SigStatus::no_recovery;
    }
    secp256k1_ecdsa_recoverable_signature rsig;
    // Fails when r >= n (s is already known to be below n/2).
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rsig, sig,
                                                             v - 27)) {
        return SigStatus::bad_rs;
    }
    secp256k1_pubkey pub;
    if (!secp256k1_ecdsa_recover(ctx, &pub, &rsig, digest.data())) {
        return SigStatus::no_recovery;
    }
    uint8_t ser[65];
    size_t ser_len = sizeof(ser);
    secp256k1_ec_pubkey_serialize(ctx, ser, &ser_len, &pub,
                                  SECP256K1_EC_UNCOMPRESSED);
    Hash32 h = keccak256(ser + 1, 64);
    std::memcpy(signer.data(), h.data() + 12, 20);
    return SigStatus::ok;
}

}  // namespace x402
