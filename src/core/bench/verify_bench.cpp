// ns/op of each step of local payment verification, and the ratio of the
// whole (decode + match + checks + recovery) to a bare
// secp256k1_ecdsa_recover: the target is at most 1.25x, i.e. everything but
// the elliptic-curve work costs at most a quarter of it.
//
//   scripts/bench.sh
#include <benchmark/benchmark.h>
#include <jansson.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <simdjson.h>

#include <cstdio>
#include <map>
#include <string>

#include "base64.hpp"
#include "eip712.hpp"
#include "payment.hpp"
#include "signature.hpp"
#include "x402/x402.h"

namespace {

// The fixed vector of js/vectors/gen-vectors.mjs (n91auth): the v2
// PAYMENT-SIGNATURE an official client sends.
const std::string header = x402::base64_encode(
    R"({"x402Version":2,"payload":{"authorization":{"from":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"1700000000","validBefore":"1900000000","nonce":"0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0"},"signature":"0xe8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b140f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c"},"resource":{"url":"http://localhost:4021/protected","description":"","mimeType":""},"accepted":{"scheme":"exact","network":"eip155:84532","amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300,"extra":{"name":"USDC","version":"2"}}})");
constexpr int64_t now = 1800000000;

x402_str_t s(const char *v)
{
    return {v, std::char_traits<char>::length(v)};
}

x402_offer_t *offer()
{
    static x402_offer_t *o = [] {
        x402_requirement_t r{};
        r.scheme = s("exact");
        r.network = x402_network_find(s("eip155:84532"));
        r.amount = s("1000");
        r.asset = s("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
        r.pay_to = s("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        r.asset_name = s("USDC");
        r.asset_version = s("2");
        r.asset_decimals = 6;
        r.max_timeout = 300;
        r.description = s("");
        r.mime_type = s("");
        const char *err = nullptr;
        x402_offer_t *o = x402_offer_create(&r, 1, &err);
        if (o == nullptr) {
            std::fprintf(stderr, "offer: %s\n", err ? err : "?");
            std::abort();
        }
        return o;
    }();
    return o;
}

x402_payment_t *decoded()
{
    static x402_payment_t *p = [] {
        x402_verdict_t v;
        x402_payment_t *p =
            x402_payment_decode({header.data(), header.size()}, 2, &v);
        if (p == nullptr) {
            std::abort();
        }
        return p;
    }();
    return p;
}

void BM_Decode(benchmark::State &st)
{
    for (auto _ : st) {
        x402_verdict_t v;
        x402_payment_t *p =
            x402_payment_decode({header.data(), header.size()}, 2, &v);
        benchmark::DoNotOptimize(p);
        x402_payment_free(p);
    }
}
BENCHMARK(BM_Decode);

// The JSON parse inside BM_Decode alone: simdjson's DOM, as payment.cpp
// uses it (one parser, padded input).
void BM_SimdjsonParse(benchmark::State &st)
{
    std::string json = *x402::base64_decode(header);
    size_t len = json.size();
    json.resize(len + simdjson::SIMDJSON_PADDING);
    simdjson::dom::parser parser;
    for (auto _ : st) {
        simdjson::dom::element root;
        auto err = parser.parse(json.data(), len, false).get(root);
        benchmark::DoNotOptimize(err);
        benchmark::DoNotOptimize(root);
    }
}
BENCHMARK(BM_SimdjsonParse);

// What the decoder parsed with before (for comparison): jansson's lexer
// reads one character per callback.
void BM_JanssonParse(benchmark::State &st)
{
    std::string json = *x402::base64_decode(header);
    for (auto _ : st) {
        json_error_t err;
        json_t *root = json_loadb(json.data(), json.size(),
                                  JSON_REJECT_DUPLICATES, &err);
        benchmark::DoNotOptimize(root);
        json_decref(root);
    }
}
BENCHMARK(BM_JanssonParse);

void BM_Match(benchmark::State &st)
{
    x402_payment_t *p = decoded();
    for (auto _ : st) {
        x402_verdict_t v;
        benchmark::DoNotOptimize(x402::payment_match(*p, offer(), &v));
    }
}
BENCHMARK(BM_Match);

void BM_Digest(benchmark::State &st)
{
    x402_payment_t *p = decoded();
    auto asset = *x402::address_from_hex(
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    for (auto _ : st) {
        x402::Hash32 dom = x402::domain_separator("USDC", "2", 84532, asset);
        benchmark::DoNotOptimize(
            x402::typed_data_digest(dom, x402::struct_hash(p->auth)));
    }
}
BENCHMARK(BM_Digest);

x402::Hash32 digest_of_notes()
{
    x402::Hash32 dom = x402::domain_separator(
        "USDC", "2", 84532,
        *x402::address_from_hex("0x036CbD53842c5426634e7929541eC2318f3dCF7e"));
    return x402::typed_data_digest(dom, x402::struct_hash(decoded()->auth));
}

void BM_Recover(benchmark::State &st)
{
    // Our recovery: checks, parse, recover, serialise, keccak to address.
    x402::Hash32 d = digest_of_notes();
    const auto &sig = decoded()->signature;
    for (auto _ : st) {
        x402::Address a;
        benchmark::DoNotOptimize(
            x402::recover_signer(d, sig.data(), sig.size(), a));
        benchmark::DoNotOptimize(a);
    }
}
BENCHMARK(BM_Recover);

void BM_BareRecover(benchmark::State &st)
{
    x402::Hash32 d = digest_of_notes();
    const auto &sig = decoded()->signature;
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_VERIFY);
    secp256k1_ecdsa_recoverable_signature rsig;
    secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rsig, sig.data(),
                                                        sig[64] - 27);
    for (auto _ : st) {
        secp256k1_pubkey pub;
        benchmark::DoNotOptimize(
            secp256k1_ecdsa_recover(ctx, &pub, &rsig, d.data()));
        benchmark::DoNotOptimize(pub);
    }
    secp256k1_context_destroy(ctx);
}
BENCHMARK(BM_BareRecover);

void BM_WholeLocalVerification(benchmark::State &st)
{
    for (auto _ : st) {
        x402_verdict_t v;
        x402_payment_t *p =
            x402_payment_decode({header.data(), header.size()}, 2, &v);
        int rc = x402_payment_verify(p, offer(), now, &v);
        if (rc != 0) {
            st.SkipWithError("verification failed");
        }
        x402_payment_free(p);
    }
}
BENCHMARK(BM_WholeLocalVerification);

// Prints as usual and remembers ns/op per benchmark for the ratio.
class Reporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ns;
    void ReportRuns(const std::vector<Run> &runs) override
    {
        ConsoleReporter::ReportRuns(runs);
        for (const Run &r : runs) {
            // CPU time: the machine is shared, wall time is noisy. With
            // repetitions, the median.
            if (r.run_type == Run::RT_Iteration ||
                (r.run_type == Run::RT_Aggregate &&
                 r.aggregate_name == "median")) {
                ns[r.run_name.function_name] = r.GetAdjustedCPUTime();
            }
        }
    }
};

}  // namespace

int main(int argc, char **argv)
{
    benchmark::Initialize(&argc, argv);
    Reporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    auto whole = rep.ns.find("BM_WholeLocalVerification");
    auto bare = rep.ns.find("BM_BareRecover");
    auto jansson = rep.ns.find("BM_JanssonParse");
    auto simd = rep.ns.find("BM_SimdjsonParse");
    if (whole != rep.ns.end() && bare != rep.ns.end() && bare->second > 0) {
        double ratio = whole->second / bare->second;
        std::printf("\nwhole local verification / bare secp256k1_ecdsa_recover"
                    " (CPU time) = %.0f ns / %.0f ns = %.3fx "
                    "(target <= 1.25x): %s\n",
                    whole->second, bare->second, ratio,
                    ratio <= 1.25 ? "met" : "NOT met");
        // The split of a local verification, in recovers.
        std::printf("split, in bare recovers:");
        for (const char *step : {"BM_Decode", "BM_SimdjsonParse", "BM_Match",
                                 "BM_Digest", "BM_Recover"}) {
            auto it = rep.ns.find(step);
            if (it != rep.ns.end()) {
                std::printf(" %s %.3f", step + 3, it->second / bare->second);
            }
        }
        std::printf("\n(decode includes the JSON parse)\n");
        if (jansson != rep.ns.end() && simd != rep.ns.end()) {
            std::printf("JSON parse: simdjson %.0f ns = %.3fx of the recover;"
                        " jansson (before) %.0f ns = %.3fx\n",
                        simd->second, simd->second / bare->second,
                        jansson->second, jansson->second / bare->second);
        }
        std::printf("whole/bare-recover ratio: %.2f (target <= 1.25)\n",
                    ratio);
    }
    benchmark::Shutdown();
    return 0;
}
