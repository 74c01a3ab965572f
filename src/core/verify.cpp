// x402_payment_verify: match the payment to one offered requirement, then
// the local checks. Order: the Python reference facilitator's (coinbase/x402
// python/x402/mechanisms/evm/exact/facilitator.py), which puts the one
// expensive check, signer recovery, last, so a payment failing a cheap rule
// never costs a recovery.
#include <cstring>
#include <string_view>

#include "address.hpp"
#include "hex.hpp"
#include "keccak.hpp"
#include "payment.hpp"
#include "signature.hpp"

namespace x402 {

namespace {

std::string_view sv(x402_str_t s) noexcept
{
    return {s.data ? s.data : "", s.len};
}

std::string_view sv(const char *s) noexcept
{
    return s ? std::string_view(s) : std::string_view();
}

bool fail(x402_verdict_t *v, const char *reason, const char *message)
{
    v->ok = 0;
    v->signature_unchecked = 0;
    v->reason = reason;
    v->message = message;
    return false;
}

// Why `accepted` differs from an offered requirement that already agrees
// on scheme and network (the TS server deep-compares `accepted`:
// findMatchingRequirements in coinbase/x402
// typescript/packages/core/src/server/x402ResourceServer.ts), or nullptr if
// it does not.
const char *v2_difference(const x402_payment_s &p, const x402_requirement_t &r)
{
    if (p.amount != sv(r.amount)) {
        return "accepted.amount is not the offered amount";
    }
    if (!address_text_equal(p.asset, sv(r.asset))) {
        return "accepted.asset is not the offered asset";
    }
    if (!address_text_equal(p.pay_to, sv(r.pay_to))) {
        return "accepted.payTo is not the offered payTo";
    }
    if (p.max_timeout != r.max_timeout) {
        return "accepted.maxTimeoutSeconds is not the offered one";
    }
    if (!p.has_extra_name || p.extra_name != sv(r.asset_name)) {
        return "accepted.extra.name is not the offered EIP-712 domain name";
    }
    if (!p.has_extra_version || p.extra_version != sv(r.asset_version)) {
        return "accepted.extra.version is not the offered EIP-712 domain "
               "version";
    }
    return nullptr;
}

// "0x" + EIP-55 of a valid "0x" + 40 hex address into out[43].
void checksummed(std::string_view a, char out[43])
{
    out[0] = '0';
    out[1] = 'x';
    checksum_hex40(a.substr(2), out + 2);
    out[42] = '\0';
}

// The offer's addresses are checksummed already (x402_requirement_t):
// copied, saving a Keccak each.
void copy_address(std::string_view a, char out[43])
{
    std::memcpy(out, a.data(), 42);
    out[42] = '\0';
}

// Domain separators of the last few (name, version, chain, asset): an
// offer's requirements repeat on every request, and this saves four of the
// ten Keccak permutations of a verification. Per thread, so lock-free, and
// trivially destructible, so that the module's TLS needs no destructors.
Hash32 cached_domain_separator(std::string_view name, std::string_view version,
                               uint64_t chain_id, const Address &asset)
{
    struct Entry {
        bool used;
        uint64_t chain_id;
        Address asset;
        uint8_t name_len;
        uint8_t version_len;
        char name[64];
        char version[32];
        Hash32 separator;
    };
    constexpr unsigned slots = 4;
    thread_local Entry cache[slots];
    thread_local unsigned next;

    for (const Entry &e : cache) {
        if (e.used && e.chain_id == chain_id && e.asset == asset &&
            std::string_view(e.name, e.name_len) == name &&
            std::string_view(e.version, e.version_len) == version) {
            return e.separator;
        }
    }
    Hash32 sep = domain_separator(name, version, chain_id, asset);
    if (name.size() <= sizeof(Entry::name) &&
        version.size() <= sizeof(Entry::version)) {
        Entry &e = cache[next++ % slots];
        e.used = true;
        e.chain_id = chain_id;
        e.asset = asset;
        e.name_len = static_cast<uint8_t>(name.size());
        e.version_len = static_cast<uint8_t>(version.size());
        std::memcpy(e.name, name.data(), name.size());
        std::memcpy(e.version, version.data(), version.size());
        e.separator = sep;
    }
    return sep;
}

bool cheap_checks_pass(const x402_payment_s &p, const x402_requirement_t &r)
{
    auto pay_to = address_from_hex(sv(r.pay_to));
    auto amount = u256_from_decimal(sv(r.amount));
    return pay_to && amount && *pay_to == p.auth.to && *amount == p.auth.value;
}

}  // namespace

const x402_requirement_t *payment_match(const x402_payment_s &p,
                                        const x402_offer_t *offer,
                                        x402_verdict_t *v)
{
    size_t n = offer ? x402_offer_count(offer) : 0;
    bool scheme_seen = false;
    bool network_seen = false;
    const char *difference = nullptr;
    const x402_requirement_t *candidate = nullptr;
    size_t candidate_index = 0;

    if (n == 0) {
        fail(v, reason::invalid_payment_requirements,
             "no payment requirement is offered here");
        return nullptr;
    }
    if (p.scheme != "exact") {
        fail(v, reason::unsupported_scheme,
             "only the exact scheme is accepted");
        return nullptr;
    }
    for (size_t i = 0; i < n; i++) {
        const x402_requirement_t *r = x402_offer_get(offer, i);
        if (r == nullptr || r->network == nullptr ||
            p.scheme != sv(r->scheme)) {
            continue;
        }
        scheme_seen = true;
        if (p.version == 2) {
            if (p.network != sv(r->network->caip2)) {
                continue;
            }
            network_seen = true;
            const char *d = v2_difference(p, *r);
            if (d == nullptr) {
                candidate = r;
                candidate_index = i;
                break;
            }
            if (difference == nullptr) {
                difference = d;
            }
        } else {
            // v1 names only scheme and network; among several requirements
            // on one network, take the one the authorization pays.
            if (p.network != sv(r->network->v1_name)) {
                continue;
            }
            network_seen = true;
            if (candidate == nullptr) {
                candidate = r;
                candidate_index = i;
            }
            if (cheap_checks_pass(p, *r)) {
                candidate = r;
                candidate_index = i;
                break;
            }
        }
    }
    if (candidate == nullptr) {
        if (!scheme_seen) {
            fail(v, reason::invalid_scheme,
                 "the payment's scheme is not offered here");
        } else if (!network_seen) {
            fail(v, reason::invalid_network,
                 p.version == 2
                     ? "accepted.network is not offered here"
                     : "network is not offered here (v1 names it, e.g. "
                       "base-sepolia)");
        } else {
            fail(v, reason::invalid_payment_requirements, difference);
        }
        return nullptr;
    }
    v->requirement = candidate_index;
    return candidate;
}

namespace {

bool recovers_from(const x402_payment_s &p, const x402_requirement_t &r)
{
    auto asset = address_from_hex(sv(r.asset));
    if (!asset) {
        return false;
    }
    Hash32 domain = cached_domain_separator(sv(r.asset_name),
                                            sv(r.asset_version),
                                            r.network->chain_id, *asset);
    Address signer;
    return recover_signer(typed_data_digest(domain, struct_hash(p.auth)),
                          p.signature.data(), p.signature.size(), signer)
               == SigStatus::ok
           && signer == p.auth.from;
}

// A v1 payment names scheme and network but no asset. When several offered
// assets on that network share payTo and amount (USDC and EURC at one
// price), the authorization alone cannot tell which was paid: the one whose
// EIP-712 domain the signature recovers under is the one the client
// signed for. Without a checkable signature (smart wallet) the first
// stays, and the facilitator's /verify judges it against that one.
const x402_requirement_t *v1_by_signature(const x402_payment_s &p,
                                          const x402_offer_t *offer,
                                          const x402_requirement_t *r,
                                          x402_verdict_t *v)
{
    if (p.version != 1 || p.signature.size() != 65) {
        return r;
    }
    size_t n = x402_offer_count(offer), twins = 0;
    for (size_t i = 0; i < n; i++) {
        const x402_requirement_t *q = x402_offer_get(offer, i);
        if (q->network == r->network && sv(q->scheme) == p.scheme
            && cheap_checks_pass(p, *q)) {
            twins++;
        }
    }
    if (twins < 2 || recovers_from(p, *r)) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        const x402_requirement_t *q = x402_offer_get(offer, i);
        if (q != r && q->network == r->network && sv(q->scheme) == p.scheme
            && cheap_checks_pass(p, *q) && recovers_from(p, *q)) {
            v->requirement = i;
            return q;
        }
    }
    return r;
}

}  // namespace

bool payment_verify(x402_payment_s &p, const x402_offer_t *offer, int64_t now,
                    x402_verdict_t *v)
{
    std::memset(v, 0, sizeof(*v));
    payment_fill_verdict(p, v);

    const x402_requirement_t *r = payment_match(p, offer, v);
    if (r == nullptr) {
        return false;
    }
    r = v1_by_signature(p, offer, r, v);
    const x402_network_t *net = r->network;
    v->network = {net->caip2, std::strlen(net->caip2)};

    auto asset = address_from_hex(sv(r->asset));
    auto pay_to = address_from_hex(sv(r->pay_to));
    auto amount = u256_from_decimal(sv(r->amount));
    if (!asset || !pay_to || !amount) {
        // The offer is validated when created; this is a broken offer.
        return fail(v, reason::invalid_payment_requirements,
                    "the offered requirement is malformed");
    }
    // The offer holds checksummed addresses (x402_offer_create); the
    // authorization's `to` is usually the offer's payTo.
    copy_address(sv(r->asset), p.asset_cs);
    v->asset = {p.asset_cs, 42};
    if (p.auth.to == *pay_to) {
        copy_address(sv(r->pay_to), p.pay_to_cs);
    } else {
        checksummed(p.to, p.pay_to_cs);
    }
    v->pay_to = {p.pay_to_cs, 42};

    // The payment's identity: (chain id, asset, from, nonce).
    uint8_t id[32 + 20 + 20 + 32];
    U256 chain = u256_from_u64(net->chain_id);
    std::memcpy(id, chain.data(), 32);
    std::memcpy(id + 32, asset->data(), 20);
    std::memcpy(id + 52, p.auth.from.data(), 20);
    std::memcpy(id + 72, p.auth.nonce.data(), 32);
    Hash32 id_hash = keccak256(id, sizeof(id));
    hex_encode_to(id_hash.data(), 32, v->payment_id);
    v->payment_id[64] = '\0';

    if (p.auth.to != *pay_to) {
        return fail(v, reason::recipient_mismatch,
                    "authorization.to is not the offered payTo");
    }
    if (p.auth.value != *amount) {
        return fail(v, reason::value_mismatch,
                    "authorization.value is not exactly the offered amount");
    }
    uint64_t unow = now < 0 ? 0 : static_cast<uint64_t>(now);
    // validBefore >= now + 6 (coinbase/x402 typescript/packages/mechanisms/
    // evm/src/exact/facilitator/eip3009.ts); compared as uint256 so a
    // far-future validBefore cannot wrap.
    U256 min_before = u256_from_u64(unow + X402_VALID_BEFORE_MARGIN);
    if (std::memcmp(p.auth.valid_before.data(), min_before.data(), 32) < 0) {
        return fail(v, reason::valid_before,
                    "authorization.validBefore is less than 6 s from now "
                    "(expired)");
    }
    U256 unow256 = u256_from_u64(unow);
    if (std::memcmp(p.auth.valid_after.data(), unow256.data(), 32) > 0) {
        return fail(v, reason::valid_after,
                    "authorization.validAfter is in the future");
    }

    if (p.signature.size() != 65) {
        // Smart wallet (ERC-1271) or ERC-6492: only the facilitator's
        // /verify can check it; everything else passed.
        v->ok = 1;
        v->signature_unchecked = 1;
        v->message = sig_status_message(SigStatus::bad_length);
        return true;
    }

    Hash32 domain = cached_domain_separator(sv(r->asset_name),
                                            sv(r->asset_version),
                                            net->chain_id, *asset);
    Hash32 digest = typed_data_digest(domain, struct_hash(p.auth));
    Address signer;
    SigStatus st = recover_signer(digest, p.signature.data(),
                                  p.signature.size(), signer);
    if (st != SigStatus::ok) {
        return fail(v, reason::signature, sig_status_message(st));
    }
    if (signer != p.auth.from) {
        return fail(v, reason::signature,
                    "the signature does not recover to authorization.from "
                    "(wrong domain, chain, asset or tampered authorization)");
    }
    v->ok = 1;
    return true;
}

}  // namespace x402
