#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "amount.hpp"
#include "x402/x402.h"

namespace {

struct Parsed {
    int rc;
    std::string out;
    std::string err;
};

Parsed parse(const std::string &in, unsigned decimals = 6, int atomic = 0)
{
    char out[X402_MAX_AMOUNT_DIGITS + 1];
    std::memset(out, 'X', sizeof(out));
    const char *err = nullptr;
    int rc = x402_amount_parse(x402_str_t{in.data(), in.size()}, decimals,
                               atomic, out, &err);
    Parsed p{rc, rc >= 0 ? std::string(out) : "", err ? err : ""};
    if (rc < 0) {
        EXPECT_FALSE(p.err.empty()) << in;
    }
    return p;
}

const std::string max256 =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

TEST(Amount, DisplayUnits)
{
    EXPECT_EQ(parse("0.001").out, "1000");
    EXPECT_EQ(parse("$0.001").out, "1000");
    EXPECT_EQ(parse("1").out, "1000000");
    EXPECT_EQ(parse("1.50").out, "1500000");
    EXPECT_EQ(parse("0.000001").out, "1");
    EXPECT_EQ(parse("0.07").out, "70000");  // the legacy float pitfall
    EXPECT_EQ(parse("007.5").out, "7500000");
    EXPECT_EQ(parse("123456789.123456").out, "123456789123456");
    EXPECT_EQ(parse("1", 18).out, "1000000000000000000");
    EXPECT_EQ(parse("5", 0).out, "5");
    EXPECT_EQ(parse("1.5").rc, 1);
}

TEST(Amount, Free)
{
    for (const char *f : {"", "0", "0.00", "$0", "000", "0.000000", "$0.0"}) {
        Parsed p = parse(f);
        EXPECT_EQ(p.rc, 0) << f;
        EXPECT_EQ(p.out, "0") << f;
    }
    EXPECT_EQ(parse("0", 6, 1).rc, 0);
    EXPECT_EQ(parse("", 6, 1).rc, 0);
}

TEST(Amount, Atomic)
{
    EXPECT_EQ(parse("1000", 6, 1).out, "1000");
    EXPECT_EQ(parse("0001000", 6, 1).out, "1000");
    EXPECT_EQ(parse(max256, 6, 1).out, max256);
    EXPECT_NE(parse("1.5", 6, 1).err.find("integer"), std::string::npos);
    EXPECT_NE(parse("$1000", 6, 1).err.find("$"), std::string::npos);
}

TEST(Amount, TooManyFractionalDigits)
{
    Parsed p = parse("0.0000001");
    EXPECT_EQ(p.rc, -1);
    EXPECT_NE(p.err.find("more than 6 fractional digits"), std::string::npos)
        << p.err;
    EXPECT_NE(parse("1.0000000").err.find("more than 6"), std::string::npos);
    EXPECT_NE(parse("0.1", 0).err.find("0 decimals"), std::string::npos);
    EXPECT_NE(parse("0.1234567890123456789", 18).err.find("more than 18"),
              std::string::npos);
}

TEST(Amount, Uint256Bounds)
{
    // 2^256 - 1 atomic units is the largest price.
    EXPECT_EQ(parse(max256, 0).rc, 1);
    std::string over = max256;
    over.back() = '6';  // 2^256
    EXPECT_NE(parse(over, 0, 1).err.find("2^256-1"), std::string::npos);
    EXPECT_NE(parse(std::string(79, '9'), 0, 1).err.find("78 digits"),
              std::string::npos);
    EXPECT_NE(parse("1" + std::string(78, '0'), 6, 1).err.find("78 digits"),
              std::string::npos);
    // 10^72 display units * 10^6 = 10^78: 79 digits.
    EXPECT_EQ(parse("1" + std::string(72, '0')).rc, -1);
    EXPECT_EQ(parse("1" + std::string(71, '0')).out,
              "1" + std::string(77, '0'));
    // Leading zeros do not count towards the 78 digits...
    EXPECT_EQ(parse("000" + max256, 0, 1).out, max256);
    // ...but the input is bounded.
    EXPECT_NE(parse(std::string(161, '0') + "1", 0, 1).err.find("160"),
              std::string::npos);
    EXPECT_NE(parse("1", 78).err.find("decimals"), std::string::npos);
}

TEST(Amount, Rejects)
{
    const std::pair<const char *, const char *> bad[] = {
        {"1e3", "scientific"},   {"1E3", "scientific"},
        {"-1", "negative"},      {"$-1", "negative"},
        {"+1", "sign"},          {".5", "before"},
        {"5.", "after"},         {" 1", "whitespace"},
        {"1 ", "whitespace"},    {"1\t", "whitespace"},
        {"0x10", "hex"},         {"0X10", "hex"},
        {"$", "no digits"},      {"$$1", "only digits"},
        {"1.2.3", "more than one"}, {"1,5", "only digits"},
        {"abc", "only digits"},  {"1$", "only digits"},
        {"USD1", "only digits"}, {"١", "only digits"},
        {"Infinity", "only digits"}, {"NaN", "only digits"},
        {"0.5 atomic", "whitespace"},
    };
    for (auto &[in, rule] : bad) {
        Parsed p = parse(in);
        EXPECT_EQ(p.rc, -1) << in;
        EXPECT_NE(p.err.find(rule), std::string::npos) << in << ": " << p.err;
    }
    EXPECT_EQ(parse(std::string("1\0", 2)).rc, -1);
    EXPECT_NE(parse("1e3", 6, 1).err.find("scientific"), std::string::npos);
    EXPECT_NE(parse("-1", 6, 1).err.find("negative"), std::string::npos);
}

TEST(Amount, Equal)
{
    EXPECT_TRUE(x402::amount_equal("1000", "1000"));
    EXPECT_TRUE(x402::amount_equal("0001000", "1000"));
    EXPECT_TRUE(x402::amount_equal("0", "000"));
    EXPECT_TRUE(x402::amount_equal(max256, "0" + max256));
    EXPECT_FALSE(x402::amount_equal("1000", "1001"));
    EXPECT_FALSE(x402::amount_equal("1000", "10000"));
    EXPECT_FALSE(x402::amount_equal("", ""));
    EXPECT_FALSE(x402::amount_equal("1000", ""));
    EXPECT_FALSE(x402::amount_equal("1e3", "1000"));
    EXPECT_FALSE(x402::amount_equal("-0", "0"));
    EXPECT_FALSE(x402::amount_equal(" 1", "1"));
}

TEST(Amount, Uint256Decimal)
{
    EXPECT_TRUE(x402::is_uint256_decimal("0"));
    EXPECT_TRUE(x402::is_uint256_decimal(max256));
    EXPECT_FALSE(x402::is_uint256_decimal(""));
    EXPECT_FALSE(x402::is_uint256_decimal(std::string(79, '1')));
    std::string over = max256;
    over[0] = '2';
    EXPECT_FALSE(x402::is_uint256_decimal(over));
}

}  // namespace
