// libFuzzer target over decode + match + local verification.
//
// Each input is used twice: as the header itself (exercising the base64
// layer) and base64-encoded (so that mutations reach the JSON, shape,
// matching and verification code directly), each under both version hints,
// against a fixed two-requirement offer at a fixed clock. Beyond the
// sanitizers, it aborts when a verdict breaks the C API's contract.
//
//   scripts/fuzz.sh            (bounded run, seeded from src/core/fuzz/corpus)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base64.hpp"
#include "x402/x402.h"

namespace {

x402_str_t s(const char *v)
{
    return {v, std::strlen(v)};
}

x402_offer_t *make_offer()
{
    x402_requirement_t r[2] = {};
    r[0].scheme = s("exact");
    r[0].network = x402_network_find(s("eip155:84532"));
    r[0].amount = s("1000");
    r[0].asset = s("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    r[0].pay_to = s("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    r[0].asset_name = s("USDC");
    r[0].asset_version = s("2");
    r[0].asset_decimals = 6;
    r[0].max_timeout = 300;
    r[0].description = s("");
    r[0].mime_type = s("");
    r[1] = r[0];
    r[1].network = x402_network_find(s("eip155:8453"));
    r[1].amount = s("2500");
    r[1].asset = s("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
    r[1].asset_name = s("USD Coin");
    r[1].max_timeout = 60;
    const char *err = nullptr;
    x402_offer_t *o = x402_offer_create(r, 2, &err);
    if (o == nullptr) {
        std::fprintf(stderr, "offer: %s\n", err ? err : "?");
        std::abort();
    }
    return o;
}

void check(bool cond, const char *what)
{
    if (!cond) {
        std::fprintf(stderr, "contract violated: %s\n", what);
        std::abort();
    }
}

void run(const std::string &header, int hint, const x402_offer_t *offer)
{
    x402_verdict_t v;
    x402_payment_t *p =
        x402_payment_decode({header.data(), header.size()}, hint, &v);
    if (p == nullptr) {
        // No allocation failure under the fuzzer: a reason is required.
        check(v.reason != nullptr && v.message != nullptr,
              "decode failure without reason");
        check(v.ok == 0, "decode failure with ok");
        return;
    }
    check(v.version == 1 || v.version == 2, "decoded version");
    check(hint == 0 || v.version == hint, "version hint ignored");
    check(v.payer.len == 42, "payer not an address");

    int64_t now = 1800000000;
    int rc = x402_payment_verify(p, offer, now, &v);
    check((rc == 0) == (v.ok == 1), "rc disagrees with ok");
    if (v.ok) {
        check(v.reason == nullptr, "ok with a reason");
        check(v.requirement < x402_offer_count(offer), "requirement index");
        check(v.payer.len == 42 && v.pay_to.len == 42 && v.asset.len == 42,
              "ok without addresses");
        check(std::strlen(v.payment_id) == 64, "payment id");
        check(v.valid_after <= uint64_t(now) &&
                  v.valid_before >= uint64_t(now) + X402_VALID_BEFORE_MARGIN,
              "ok outside the validity window");
    } else {
        check(v.reason != nullptr, "failure without reason");
        check(v.signature_unchecked == 0, "unchecked on failure");
    }
    // Verification is repeatable on the same payment.
    x402_verdict_t again;
    int rc2 = x402_payment_verify(p, offer, now, &again);
    check(rc2 == rc && again.ok == v.ok &&
              (v.reason == nullptr) == (again.reason == nullptr),
          "verification not repeatable");
    x402_payment_free(p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const x402_offer_t *offer = make_offer();
    std::string raw(reinterpret_cast<const char *>(data), size);
    std::string encoded = x402::base64_encode(raw);
    for (int hint : {2, 1}) {
        run(raw, hint, offer);
        run(encoded, hint, offer);
    }
    unsigned char h[32];
    x402_keccak256(data, size, h);
    return 0;
}
