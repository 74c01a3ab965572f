// Per-call cost of the issue 12 pieces the glue will call: a CDP
// facilitator JWT (one per /verify, /settle, /supported call), parsing a
// /supported answer (once per refresh per worker), rendering the bazaar
// extension (configuration time) and creating a 4-option offer (per
// request when a price comes from a variable).
//
//   scripts/bench.sh   (or build with -DX402_BENCH=ON and run x402core_bench)
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bazaar.hpp"
#include "cdp_jwt.hpp"
#include "supported.hpp"
#include "x402/x402.h"

namespace {

std::string slurp(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const std::string data = X402_BENCH_DATA_DIR;

void cdp(benchmark::State &state, const char *file)
{
    const char *err = nullptr;
    auto key = x402::cdp_key_load("organizations/x/apiKeys/y", slurp(data + "/cdp/" + file), &err);
    if (!key) {
        state.SkipWithError(err);
        return;
    }
    for (auto _ : state) {
        auto t = x402::cdp_jwt(*key, "POST", "api.cdp.coinbase.com", "/platform/v2/x402/settle",
                               1767225600, 0, &err);
        benchmark::DoNotOptimize(t);
    }
}

void BM_CdpJwtEs256(benchmark::State &state)
{
    cdp(state, "es256-sec1.pem");
}
BENCHMARK(BM_CdpJwtEs256);

void BM_CdpJwtEdDsa(benchmark::State &state)
{
    cdp(state, "ed25519.b64");
}
BENCHMARK(BM_CdpJwtEdDsa);

void BM_SupportedParse(benchmark::State &state)
{
    std::string body = slurp(data + "/supported-official.json");
    for (auto _ : state) {
        x402::Supported s;
        std::string e;
        benchmark::DoNotOptimize(x402::supported_parse(200, body, s, e));
    }
}
BENCHMARK(BM_SupportedParse);

void BM_BazaarRender(benchmark::State &state)
{
    x402::BazaarInput in{"GET", R"({"city":"Paris"})", "", "",
                         R"({"properties":{"city":{"type":"string"}},"required":["city"]})",
                         R"({"city":"Paris","weather":"foggy"})", ""};
    for (auto _ : state) {
        const char *err = nullptr;
        benchmark::DoNotOptimize(x402::bazaar_extensions(in, &err));
    }
}
BENCHMARK(BM_BazaarRender);

}  // namespace
