// The per-request cost of a 402 for a pre-rendered offer
// (x402_offer_render: URL splice + base64 of the variable tail), against a
// full render (offer creation + render) as a request whose offer depends on
// variables pays it, and against a plain base64 of the whole v2 JSON.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "base64.hpp"
#include "x402/x402.h"

namespace {

// A bump allocator over a fixed arena, reset per iteration, like an nginx
// request pool.
struct Arena {
    std::vector<char> mem = std::vector<char>(1 << 20);
    size_t used = 0;
    static void *alloc(void *ctx, size_t n)
    {
        auto *a = static_cast<Arena *>(ctx);
        if (a->used + n > a->mem.size()) {
            return nullptr;
        }
        void *p = a->mem.data() + a->used;
        a->used += n;
        return p;
    }
    x402_allocator_t al{&Arena::alloc, this};
};

x402_str_t s(const char *p)
{
    return x402_str_t{p, std::strlen(p)};
}

std::vector<x402_requirement_t> requirements(size_t n)
{
    const char *nets[] = {"base-sepolia", "base", "polygon", "avalanche"};
    std::vector<x402_requirement_t> v;
    for (size_t i = 0; i < n; i++) {
        const x402_network_t *net = x402_network_find(s(nets[i % 4]));
        x402_requirement_t r{};
        r.scheme = s("exact");
        r.network = net;
        r.amount = s("1000");
        r.asset = s(net->usdc);
        r.pay_to = s("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
        r.asset_name = s(net->usdc_name);
        r.asset_version = s(net->usdc_version);
        r.asset_decimals = 6;
        r.max_timeout = 300;
        r.description = s("Quarterly report");
        r.mime_type = s("application/pdf");
        v.push_back(r);
    }
    return v;
}

const char *url = "https://api.example.com/reports/2026/q3.pdf?format=full";

void BM_Render(benchmark::State &state)
{
    auto reqs = requirements(size_t(state.range(0)));
    const char *err = nullptr;
    x402_offer_t *o = x402_offer_create(reqs.data(), reqs.size(), &err);
    Arena arena;
    size_t bytes = 0;
    for (auto _ : state) {
        arena.used = 0;
        x402_str_t h, b;
        if (x402_offer_render(o, s(url), x402_str_t{nullptr, 0}, &arena.al, &h,
                              &b) != 0) {
            state.SkipWithError("render failed");
            break;
        }
        benchmark::DoNotOptimize(h.data);
        bytes = h.len + b.len;
    }
    state.counters["bytes"] = double(bytes);
    x402_offer_free(o);
}
BENCHMARK(BM_Render)->Arg(1)->Arg(4);

void BM_RenderWithError(benchmark::State &state)
{
    auto reqs = requirements(1);
    const char *err = nullptr;
    x402_offer_t *o = x402_offer_create(reqs.data(), reqs.size(), &err);
    Arena arena;
    for (auto _ : state) {
        arena.used = 0;
        x402_str_t h, b;
        x402_offer_render(o, s(url),
                          s("invalid_exact_evm_payload_authorization_valid_before"),
                          &arena.al, &h, &b);
        benchmark::DoNotOptimize(h.data);
    }
    x402_offer_free(o);
}
BENCHMARK(BM_RenderWithError);

// What a request pays when the offer depends on variables.
void BM_CreateAndRender(benchmark::State &state)
{
    auto reqs = requirements(size_t(state.range(0)));
    Arena arena;
    for (auto _ : state) {
        arena.used = 0;
        const char *err = nullptr;
        x402_offer_t *o = x402_offer_create(reqs.data(), reqs.size(), &err);
        x402_str_t h, b;
        x402_offer_render(o, s(url), x402_str_t{nullptr, 0}, &arena.al, &h, &b);
        benchmark::DoNotOptimize(h.data);
        x402_offer_free(o);
    }
}
BENCHMARK(BM_CreateAndRender)->Arg(1)->Arg(4);

// Baseline: base64 of an already-built v2 JSON of the same size.
void BM_Base64WholeHeader(benchmark::State &state)
{
    auto reqs = requirements(1);
    const char *err = nullptr;
    x402_offer_t *o = x402_offer_create(reqs.data(), reqs.size(), &err);
    Arena arena;
    x402_str_t h, b;
    x402_offer_render(o, s(url), x402_str_t{nullptr, 0}, &arena.al, &h, &b);
    std::string json = *x402::base64_decode(std::string_view(h.data, h.len));
    std::string out(x402::base64_encoded_len(json.size()), '\0');
    for (auto _ : state) {
        x402::base64_encode_to(json, out.data());
        benchmark::DoNotOptimize(out.data());
    }
    x402_offer_free(o);
}
BENCHMARK(BM_Base64WholeHeader);

}  // namespace

// main() is verify_bench.cpp's: CMake globs src/core/bench/*.cpp into one
// binary (x402core_bench --benchmark_filter=Render for these).
