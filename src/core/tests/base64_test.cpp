#include <gtest/gtest.h>

#include <string>

#include "base64.hpp"
#include "x402/x402.h"

namespace {

using x402::base64_decode;
using x402::base64_encode;

TEST(Base64, Rfc4648Vectors)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"",     "Zg==",     "Zm8=",    "Zm9v",
                         "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        EXPECT_EQ(base64_encode(plain[i]), enc[i]);
        auto d = base64_decode(enc[i]);
        ASSERT_TRUE(d.has_value()) << enc[i];
        EXPECT_EQ(*d, plain[i]);
    }
}

TEST(Base64, RoundTripAllLengthsAndBytes)
{
    std::string s;
    for (int len = 0; len < 300; len++) {
        auto e = base64_encode(s);
        EXPECT_EQ(e.size() % 4, 0u);
        auto d = base64_decode(e);
        ASSERT_TRUE(d.has_value());
        EXPECT_EQ(*d, s);
        s.push_back(static_cast<char>(len * 97 + 3));
    }
}

TEST(Base64, MissingPaddingTolerated)
{
    EXPECT_EQ(base64_decode("Zg").value_or("?"), "f");
    EXPECT_EQ(base64_decode("Zm8").value_or("?"), "fo");
    EXPECT_EQ(base64_decode("Zm9vYmE").value_or("?"), "fooba");
}

TEST(Base64, RejectsNonStandardAlphabet)
{
    // '-' and '_' are the URL-safe alphabet: "+/8=" vs "-_8=".
    EXPECT_TRUE(base64_decode("+/8=").has_value());
    EXPECT_FALSE(base64_decode("-_8=").has_value());
    EXPECT_FALSE(base64_decode("Zm9v-mFy").has_value());
    EXPECT_FALSE(base64_decode("Zm9v_mFy").has_value());
    EXPECT_FALSE(base64_decode("Zm9v YmFy").has_value());
    EXPECT_FALSE(base64_decode("Zm9v\nYmFy").has_value());
    EXPECT_FALSE(base64_decode(" Zm9v").has_value());
    EXPECT_FALSE(base64_decode("Zm9v\r").has_value());
    EXPECT_FALSE(base64_decode(std::string("Zm\0v", 4)).has_value());
    EXPECT_FALSE(base64_decode("Zm9v\x80").has_value());
    EXPECT_FALSE(base64_decode("Zm.v").has_value());
}

TEST(Base64, RejectsBadPadding)
{
    EXPECT_FALSE(base64_decode("Zg=").has_value());     // short padding
    EXPECT_FALSE(base64_decode("Zg===").has_value());   // excess
    EXPECT_FALSE(base64_decode("Zm8==").has_value());   // too much for 2
    EXPECT_FALSE(base64_decode("Zm9v=").has_value());   // not needed
    EXPECT_FALSE(base64_decode("Zm9v====").has_value());
    EXPECT_FALSE(base64_decode("Zg==Zg==").has_value());  // '=' inside
    EXPECT_FALSE(base64_decode("Z===").has_value());
    EXPECT_FALSE(base64_decode("=").has_value());
    EXPECT_FALSE(base64_decode("Z").has_value());       // dangling char
    EXPECT_FALSE(base64_decode("Zm9vY").has_value());
    // Non-zero trailing bits: "Zh==" would decode to 'f' leniently.
    EXPECT_FALSE(base64_decode("Zh==").has_value());
    EXPECT_FALSE(base64_decode("Zm9=").has_value());
}

void *test_alloc(void *ctx, size_t n)
{
    auto *store = static_cast<std::string *>(ctx);
    store->assign(n, '\0');
    return store->data();
}

TEST(Base64, CApi)
{
    std::string store;
    x402_allocator_t a{test_alloc, &store};
    x402_str_t out{};
    ASSERT_EQ(x402_base64_encode({"foobar", 6}, &a, &out), 0);
    EXPECT_EQ(std::string(out.data, out.len), "Zm9vYmFy");
    ASSERT_EQ(x402_base64_encode({"fo", 2}, &a, &out), 0);
    EXPECT_EQ(std::string(out.data, out.len), "Zm8=");
    ASSERT_EQ(x402_base64_encode({nullptr, 0}, &a, &out), 0);
    EXPECT_EQ(out.len, 0u);

    x402_allocator_t failing{[](void *, size_t) -> void * { return nullptr; },
                             nullptr};
    EXPECT_EQ(x402_base64_encode({"foobar", 6}, &failing, &out), -1);
}

}  // namespace
