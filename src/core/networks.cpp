#include "networks.hpp"

#include <array>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace x402 {

namespace {

constexpr const char *none = nullptr;

// v1 name, CAIP-2, chain id, default token address (EIP-55), EIP-712 name,
// EIP-712 version, decimals. Sources in networks.hpp.
const x402_network_t table[] = {
    {"ethereum", "eip155:1", 1,
     "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USD Coin", "2", 6},
    {"sepolia", "eip155:11155111", 11155111, none, none, none, 0},
    {"abstract", "eip155:2741", 2741,
     "0x84A71ccD554Cc1b02749b35d22F684CC8ec987e1", "Bridged USDC", "2", 6},
    {"abstract-testnet", "eip155:11124", 11124,
     "0xe4C7fBB0a626ed208021ccabA6Be1566905E2dFc", "Bridged USDC", "2", 6},
    {"base-sepolia", "eip155:84532", 84532,
     "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2", 6},
    {"base", "eip155:8453", 8453,
     "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2", 6},
    {"avalanche-fuji", "eip155:43113", 43113,
     "0x5425890298aed601595a70AB815c96711a31Bc65", "USD Coin", "2", 6},
    {"avalanche", "eip155:43114", 43114,
     "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", "USD Coin", "2", 6},
    {"iotex", "eip155:4689", 4689,
     "0xcDf79194C6C285077A58da47641D4dBe51F63542", "Bridged USDC", "2", 6},
    // "USDC", not the notes' "USD Coin": @x402/evm 2.27.0 (js/, newer than
    // the notes' 2.10.0) corrected Monad's EIP-712 name.
    {"monad", "eip155:143", 143,
     "0x754704Bc059F8C67012fEd69BC8A327a5aafb603", "USDC", "2", 6},
    {"sei", "eip155:1329", 1329,
     "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392", "USDC", "2", 6},
    {"sei-testnet", "eip155:1328", 1328,
     "0x4fCF1784B31630811181f670Aea7A7bEF803eaED", "USDC", "2", 6},
    {"polygon", "eip155:137", 137,
     "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "USD Coin", "2", 6},
    {"polygon-amoy", "eip155:80002", 80002,
     "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", "USDC", "2", 6},
    {"peaq", "eip155:3338", 3338,
     "0xbbA60da06c2c5424f03f7434542280FCAd453d10", "USDC", "2", 6},
    {"story", "eip155:1514", 1514,
     "0xF1815bd50389c46847f0Bda824eC8da914045D14", "Bridged USDC", "2", 6},
    {"educhain", "eip155:41923", 41923,
     "0x12a272A581feE5577A5dFa371afEB4b2F3a8C2F8", "Bridged USDC (Stargate)",
     "2", 6},
    {"skale-base-sepolia", "eip155:324705682", 324705682,
     "0x2e08028E3C4c2356572E096d8EF835cD5C6030bD",
     "Bridged USDC (SKALE Bridge)", "2", 6},
    {"megaeth", "eip155:4326", 4326, none, none, none, 0},
    {"stable", "eip155:988", 988,
     "0x779Ded0c9e1022225f8E0630b35a9b54bE713736", "USDT0", "1", 6},
    {"stable-testnet", "eip155:2201", 2201,
     "0x78Cf24370174180738C5B8E352B6D14c83a6c9A9", "USDT0", "1", 6},
    {"eip155:42161", "eip155:42161", 42161,
     "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin", "2", 6},
    {"eip155:421614", "eip155:421614", 421614,
     "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", "USD Coin", "2", 6},
    {"eip155:31611", "eip155:31611", 31611, none, none, none, 0},
};

// typescript/packages/legacy/x402/src/types/shared/network.ts (EVM part)
constexpr std::string_view legacy_names[] = {
    "abstract", "abstract-testnet", "base-sepolia", "base", "avalanche-fuji",
    "avalanche", "iotex", "sei", "sei-testnet", "polygon", "polygon-amoy",
    "peaq", "story", "educhain", "skale-base-sepolia",
};

constexpr uint64_t max_safe_integer = (uint64_t(1) << 53) - 1;

struct Interned {
    x402_network_t net;
    char caip2[32];
};

// Unknown eip155 chains; never freed (pointers handed out stay valid).
std::array<Interned, 64> interned;
size_t interned_used = 0;
std::mutex interned_mutex;

const x402_network_t *intern_chain(uint64_t id)
{
    std::lock_guard<std::mutex> lock(interned_mutex);
    for (size_t i = 0; i < interned_used; i++) {
        if (interned[i].net.chain_id == id) {
            return &interned[i].net;
        }
    }
    if (interned_used == interned.size()) {
        return nullptr;
    }
    Interned &e = interned[interned_used];
    std::snprintf(e.caip2, sizeof(e.caip2), "eip155:%llu",
                  static_cast<unsigned long long>(id));
    e.net = x402_network_t{e.caip2, e.caip2, id, nullptr, nullptr, nullptr, 0};
    interned_used++;
    return &e.net;
}

}  // namespace

std::optional<uint64_t> parse_caip2_eip155(std::string_view s) noexcept
{
    constexpr std::string_view prefix = "eip155:";
    if (s.substr(0, prefix.size()) != prefix) {
        return std::nullopt;
    }
    s.remove_prefix(prefix.size());
    if (s.empty() || s.size() > 16 || s[0] == '0') {
        return std::nullopt;
    }
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + uint64_t(c - '0');
    }
    if (v > max_safe_integer) {
        return std::nullopt;
    }
    return v;
}

const x402_network_t *network_find(std::string_view name)
{
    for (const x402_network_t &n : table) {
        if (name == n.v1_name || name == n.caip2) {
            return &n;
        }
    }
    auto id = parse_caip2_eip155(name);
    if (!id) {
        return nullptr;
    }
    // "eip155:8453" is in the table above; only new chains get here.
    return intern_chain(*id);
}

const x402_network_t *network_table(size_t *n) noexcept
{
    *n = sizeof(table) / sizeof(table[0]);
    return table;
}

bool network_is_legacy_v1(const x402_network_t *n) noexcept
{
    for (std::string_view name : legacy_names) {
        if (name == n->v1_name) {
            return true;
        }
    }
    return false;
}

}  // namespace x402
