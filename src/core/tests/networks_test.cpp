#include <gtest/gtest.h>

#include <set>
#include <string>

#include "address.hpp"
#include "networks.hpp"
#include "x402/x402.h"

namespace {

x402_str_t s(const char *p)
{
    return x402_str_t{p, std::char_traits<char>::length(p)};
}

TEST(Networks, FindsByV1NameAndCaip2)
{
    const x402_network_t *a = x402_network_find(s("base-sepolia"));
    const x402_network_t *b = x402_network_find(s("eip155:84532"));
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a->chain_id, 84532u);
    EXPECT_STREQ(a->caip2, "eip155:84532");
    EXPECT_STREQ(a->usdc, "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    EXPECT_STREQ(a->usdc_name, "USDC");
    EXPECT_STREQ(a->usdc_version, "2");
    EXPECT_EQ(a->usdc_decimals, 6u);

    const x402_network_t *base = x402_network_find(s("base"));
    ASSERT_NE(base, nullptr);
    EXPECT_EQ(base, x402_network_find(s("eip155:8453")));
    EXPECT_STREQ(base->usdc, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
    // coinbase/x402 typescript/packages/mechanisms/evm/src/shared/
    // defaultAssets.ts
    EXPECT_STREQ(base->usdc_name, "USD Coin");
}

TEST(Networks, ChainIdsOfTheTsGoTable)
{
    // coinbase/x402 typescript/packages/mechanisms/evm/src/v1/index.ts;
    // Python differs for the last four (TS/Go values used).
    const std::pair<const char *, uint64_t> want[] = {
        {"ethereum", 1}, {"sepolia", 11155111}, {"abstract", 2741},
        {"abstract-testnet", 11124}, {"base-sepolia", 84532}, {"base", 8453},
        {"avalanche-fuji", 43113}, {"avalanche", 43114}, {"iotex", 4689},
        {"monad", 143}, {"sei", 1329}, {"polygon", 137},
        {"polygon-amoy", 80002}, {"peaq", 3338}, {"megaeth", 4326},
        {"stable", 988}, {"stable-testnet", 2201}, {"sei-testnet", 1328},
        {"story", 1514}, {"educhain", 41923},
        {"skale-base-sepolia", 324705682},
    };
    for (auto &[name, id] : want) {
        const x402_network_t *n = x402_network_find(s(name));
        ASSERT_NE(n, nullptr) << name;
        EXPECT_EQ(n->chain_id, id) << name;
        EXPECT_EQ(std::string(n->caip2), "eip155:" + std::to_string(id));
        EXPECT_EQ(x402_network_find(s(n->caip2)), n) << name;
    }
}

TEST(Networks, DefaultAssetsAreChecksummedAndComplete)
{
    size_t n = 0;
    const x402_network_t *t = x402::network_table(&n);
    std::set<uint64_t> ids;
    for (size_t i = 0; i < n; i++) {
        EXPECT_TRUE(ids.insert(t[i].chain_id).second) << t[i].caip2;
        if (t[i].usdc == nullptr) {
            EXPECT_EQ(t[i].usdc_name, nullptr);
            continue;
        }
        auto cs = x402::checksum_address(t[i].usdc);
        ASSERT_TRUE(cs.has_value()) << t[i].caip2;
        EXPECT_EQ(*cs, t[i].usdc) << t[i].caip2;
        ASSERT_NE(t[i].usdc_name, nullptr);
        ASSERT_NE(t[i].usdc_version, nullptr);
        EXPECT_GT(std::string(t[i].usdc_name).size(), 0u);
        EXPECT_TRUE(t[i].usdc_decimals == 6) << t[i].caip2;
    }
    // As @x402/evm 2.27.0 DEFAULT_ASSETS (clients sign with these).
    EXPECT_STREQ(x402_network_find(s("monad"))->usdc_name, "USDC");
    EXPECT_STREQ(x402_network_find(s("polygon"))->usdc_name, "USD Coin");
    EXPECT_STREQ(x402_network_find(s("sei"))->usdc_name, "USDC");
    // Stable's USDT0 is EIP-712 version "1" (coinbase/x402
    // typescript/packages/mechanisms/evm/src/shared/defaultAssets.ts).
    EXPECT_STREQ(x402_network_find(s("stable"))->usdc_version, "1");
    // Permit2-only defaults are not offered (EIP-3009 module).
    EXPECT_EQ(x402_network_find(s("megaeth"))->usdc, nullptr);
}

TEST(Networks, NoV1NameKeepsCaip2)
{
    const x402_network_t *arb = x402_network_find(s("eip155:42161"));
    ASSERT_NE(arb, nullptr);
    EXPECT_STREQ(arb->v1_name, "eip155:42161");
    EXPECT_STREQ(arb->usdc, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831");
    EXPECT_FALSE(x402::network_is_legacy_v1(arb));
    EXPECT_TRUE(x402::network_is_legacy_v1(x402_network_find(s("base"))));
    EXPECT_FALSE(x402::network_is_legacy_v1(x402_network_find(s("ethereum"))));
}

TEST(Networks, UnknownEip155ChainHasNoDefaultAsset)
{
    const x402_network_t *op = x402_network_find(s("eip155:10"));
    ASSERT_NE(op, nullptr);
    EXPECT_EQ(op->chain_id, 10u);
    EXPECT_STREQ(op->caip2, "eip155:10");
    EXPECT_STREQ(op->v1_name, "eip155:10");
    EXPECT_EQ(op->usdc, nullptr);
    EXPECT_EQ(x402_network_find(s("eip155:10")), op);  // interned once
    const x402_network_t *big = x402_network_find(s("eip155:9007199254740991"));
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(big->chain_id, 9007199254740991u);
}

TEST(Networks, Rejects)
{
    const char *bad[] = {
        "", "Base", "BASE", "base ", " base", "base-sepolia\n", "eip155:",
        "eip155:0", "eip155:08453", "eip155:-1", "eip155:+1", "eip155:1a",
        "eip155:9007199254740992", "eip155:99999999999999999999",
        "EIP155:8453", "solana", "solana-devnet", "eip155:8453 ", "eip155 8453",
        "cosmos:8453",
    };
    for (const char *b : bad) {
        EXPECT_EQ(x402_network_find(s(b)), nullptr) << '"' << b << '"';
    }
    EXPECT_EQ(x402_network_find(x402_str_t{nullptr, 0}), nullptr);
    // An embedded NUL must not truncate the comparison.
    EXPECT_EQ(x402_network_find(x402_str_t{"base\0x", 6}), nullptr);
}

TEST(Networks, InternPoolIsBounded)
{
    // The pool holds 64 chains; beyond that lookups of new ids fail.
    size_t found = 0;
    for (uint64_t id = 5000000; id < 5000200; id++) {
        std::string n = "eip155:" + std::to_string(id);
        if (x402_network_find(s(n.c_str())) != nullptr) {
            found++;
        }
    }
    EXPECT_LE(found, 64u);
    EXPECT_GT(found, 0u);
    // Known chains still resolve.
    EXPECT_NE(x402_network_find(s("eip155:8453")), nullptr);
}

}  // namespace
