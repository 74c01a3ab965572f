#include <gtest/gtest.h>

#include <string>

#include "eip712.hpp"
#include "hex.hpp"
#include "keccak.hpp"

namespace {

using namespace x402;

Hash32 h32(std::string_view hex0x)
{
    Hash32 h{};
    EXPECT_TRUE(hex_decode_to(hex0x.substr(2), h.data(), h.size())) << hex0x;
    return h;
}

TEST(Eip712, TypeHashesAreKeccakOfTypeStrings)
{
    EXPECT_EQ(domain_typehash,
              keccak256("EIP712Domain(string name,string version,uint256 "
                        "chainId,address verifyingContract)"));
    EXPECT_EQ(transfer_with_authorization_typehash,
              keccak256("TransferWithAuthorization(address from,address to,"
                        "uint256 value,uint256 validAfter,uint256 validBefore,"
                        "bytes32 nonce)"));
}

TEST(Eip712, NotesVector91)
{
    // The fixed vector of js/vectors/gen-vectors.mjs (n91auth), which viem
    // signs and hashes.
    auto asset = address_from_hex("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    ASSERT_TRUE(asset);
    Hash32 dom = domain_separator("USDC", "2", 84532, *asset);
    EXPECT_EQ(dom, h32("0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"));

    TransferAuthorization a{};
    a.from = *address_from_hex("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    a.to = *address_from_hex("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    a.value = *u256_from_decimal("1000");
    a.valid_after = *u256_from_decimal("1700000000");
    a.valid_before = *u256_from_decimal("1900000000");
    a.nonce = keccak256("x402-test-vector-1");
    Hash32 sh = struct_hash(a);
    EXPECT_EQ(sh, h32("0xb828d78f2357df4b73243a507c1ff21ab4d8604cbad74c67f299e5c0409ea50e"));
    EXPECT_EQ(typed_data_digest(dom, sh),
              h32("0x01c660eaddb82ae265e0d01c2d81ac5be8ccb1dbcf23cf69e9efdc0359b26b68"));
}

TEST(Eip712, BaseMainnetDomain)
{
    auto asset = address_from_hex("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
    ASSERT_TRUE(asset);
    EXPECT_EQ(domain_separator("USD Coin", "2", 8453, *asset),
              h32("0x02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f"));
}

TEST(Eip712, U256FromDecimal)
{
    auto hex = [](std::string_view s) {
        auto v = u256_from_decimal(s);
        return v ? hex_encode(*v) : std::string("none");
    };
    EXPECT_EQ(hex("0"), std::string(64, '0'));
    EXPECT_EQ(hex("1000"), std::string(60, '0') + "03e8");
    EXPECT_EQ(hex("0001000"), std::string(60, '0') + "03e8");
    EXPECT_EQ(hex("18446744073709551616"), std::string(47, '0') + "1" + std::string(16, '0'));
    // 2^256 - 1 is the largest (78 digits), 2^256 overflows.
    EXPECT_EQ(hex("115792089237316195423570985008687907853269984665640564039457584007913129639935"),
              std::string(64, 'f'));
    EXPECT_EQ(hex("115792089237316195423570985008687907853269984665640564039457584007913129639936"),
              "none");
    EXPECT_EQ(hex("999999999999999999999999999999999999999999999999999999999999999999999999999999"),
              "none");
    EXPECT_EQ(hex(std::string(79, '0')), "none");  // over the digit cap
    EXPECT_EQ(hex(""), "none");
    EXPECT_EQ(hex("-1"), "none");
    EXPECT_EQ(hex("+1"), "none");
    EXPECT_EQ(hex("1.0"), "none");
    EXPECT_EQ(hex("1e3"), "none");
    EXPECT_EQ(hex(" 1"), "none");
    EXPECT_EQ(hex("0x10"), "none");
}

TEST(Eip712, U64Conversions)
{
    EXPECT_EQ(u256_to_u64(u256_from_u64(0)).value(), 0u);
    EXPECT_EQ(u256_to_u64(u256_from_u64(UINT64_MAX)).value(), UINT64_MAX);
    EXPECT_EQ(u256_to_u64(*u256_from_decimal("1900000000")).value(), 1900000000u);
    EXPECT_FALSE(u256_to_u64(*u256_from_decimal("18446744073709551616")));
}

TEST(Eip712, AddressFromHex)
{
    EXPECT_TRUE(address_from_hex("0x209693bc6afc0c5328ba36faf03c514ef312287c"));
    EXPECT_TRUE(address_from_hex("0x209693BC6AFC0C5328BA36FAF03C514EF312287C"));
    EXPECT_FALSE(address_from_hex("209693bc6afc0c5328ba36faf03c514ef312287c"));
    EXPECT_FALSE(address_from_hex("0X209693bc6afc0c5328ba36faf03c514ef312287c"));
    EXPECT_FALSE(address_from_hex("0x209693bc6afc0c5328ba36faf03c514ef312287"));
    EXPECT_FALSE(address_from_hex("0x209693bc6afc0c5328ba36faf03c514ef312287c0"));
    EXPECT_FALSE(address_from_hex("0x209693bc6afc0c5328ba36faf03c514ef312287g"));
}

}  // namespace
