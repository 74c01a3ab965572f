#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "address.hpp"
#include "x402/x402.h"

namespace {

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

std::string lower(std::string a)
{
    for (char &c : a) {
        c = char(std::tolower(static_cast<unsigned char>(c)));
    }
    return a;
}

std::string upper_hex(std::string a)
{
    for (size_t i = 2; i < a.size(); i++) {
        a[i] = char(std::toupper(static_cast<unsigned char>(a[i])));
    }
    return a;
}

// EIP-55 specification test cases.
const char *const eip55[] = {
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
};

TEST(Address, Eip55SpecVectors)
{
    for (const char *v : eip55) {
        auto cs = x402::checksum_address(v);
        ASSERT_TRUE(cs.has_value()) << v;
        EXPECT_EQ(*cs, v) << v;
        EXPECT_EQ(*x402::checksum_address(lower(v)), v);
        EXPECT_EQ(*x402::checksum_address(std::string(v).substr(2)), v);
        char out[43];
        const char *err = nullptr;
        ASSERT_EQ(x402_address_parse(s(v), out, &err), 0) << v << err;
        EXPECT_STREQ(out, v);
    }
}

TEST(Address, KnownTokens)
{
    EXPECT_EQ(*x402::checksum_address("0x036cbd53842c5426634e7929541ec2318f3dcf7e"),
              "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    EXPECT_EQ(*x402::checksum_address("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"),
              "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
}

// checksum_hex40 keeps recent results by the address's last two digits:
// addresses sharing them (expected values from viem's getAddress) must not
// be answered from each other's entry, in any order or input case.
TEST(Address, ChecksumOfAddressesSharingARecentSlot)
{
    const std::string want[] = {
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "0x309693bc6afc0c5328ba36faf03C514EF312287C",
        "0x209693bc6afC0c5328Ba36FAf03c514EF312297C",
    };
    for (int round = 0; round < 3; round++) {
        for (int i : {0, 1, 0, 2, 2, 1, 0}) {
            const std::string in = round == 1 ? upper_hex(want[i])
                                              : lower(want[i]);
            char out[40];
            x402::checksum_hex40(std::string_view(in).substr(2), out);
            EXPECT_EQ(std::string(out, 40), want[i].substr(2)) << in;
        }
    }
}

TEST(Address, ParseAcceptsUniformCaseAndReturnsChecksum)
{
    std::string want = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    char out[43];
    const char *err = nullptr;
    for (const std::string &in : {want, lower(want), upper_hex(want)}) {
        ASSERT_EQ(x402_address_parse(s(in), out, &err), 0) << in;
        EXPECT_STREQ(out, want.c_str());
        EXPECT_EQ(out[42], '\0');
    }
}

TEST(Address, ParseRejects)
{
    const std::string good = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    std::string flipped = good;
    flipped[5] = 'b';  // "Bc" -> "bc": checksum broken
    const std::pair<std::string, const char *> bad[] = {
        {flipped, "EIP-55"},
        {"", "start with"},
        {good.substr(2), "start with"},
        {"0X" + good.substr(2), "start with"},
        {good.substr(0, 41), "exactly 40"},
        {good + "0", "exactly 40"},
        {"0x209693Bc6afc0C5328bA36FaF03C514EF31228 C", "hex digits"},
        {"0x209693Bc6afc0C5328bA36FaF03C514EF31228gC", "hex digits"},
        {" " + good, "start with"},
    };
    for (auto &[in, rule] : bad) {
        char out[43] = {};
        const char *err = nullptr;
        EXPECT_EQ(x402_address_parse(s(in), out, &err), -1) << in;
        ASSERT_NE(err, nullptr) << in;
        EXPECT_NE(std::string(err).find(rule), std::string::npos)
            << in << ": " << err;
    }
}

TEST(Address, ChecksumRejectsNonHex)
{
    EXPECT_FALSE(x402::checksum_address(""));
    EXPECT_FALSE(x402::checksum_address("0x"));
    EXPECT_FALSE(x402::checksum_address("0x1234"));
    EXPECT_FALSE(x402::checksum_address(
        "0xZZ9693Bc6afc0C5328bA36FaF03C514EF312287C"));
    EXPECT_FALSE(x402::checksum_address(
        "0x0x209693Bc6afc0C5328bA36FaF03C514EF31228"));
}

TEST(Address, Equal)
{
    EXPECT_TRUE(x402::address_equal("0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                                    "0x209693bc6afc0c5328ba36faf03c514ef312287c"));
    EXPECT_TRUE(x402::address_equal("209693BC6AFC0C5328BA36FAF03C514EF312287C",
                                    "0x209693bc6afc0c5328ba36faf03c514ef312287c"));
    EXPECT_FALSE(x402::address_equal("0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                                     "0x209693Bc6afc0C5328bA36FaF03C514EF312287D"));
    EXPECT_FALSE(x402::address_equal("0x1", "0x1"));
    EXPECT_FALSE(x402::address_equal("", ""));
}

}  // namespace
