// The decoder once gave jansson a per-decode arena through the process-wide
// allocator hooks; it parses with simdjson now (payment.cpp). jansson values
// made before or after a decode (facilitator answers, the glue) must stay
// ordinary heap values, and large payloads must decode the same.
#include <gtest/gtest.h>
#include <jansson.h>

#include <string>

#include "base64.hpp"
#include "payment.hpp"
#include "vectors_util.hpp"

namespace {

using namespace x402test;

const std::string payload_head =
    R"({"x402Version":2,"payload":{"authorization":{"from":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"1700000000","validBefore":"1900000000","nonce":"0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0"},"signature":"0xe8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b140f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c"},"resource":{"url":"http://localhost:4021/protected","description":"","mimeType":""},"accepted":{"scheme":"exact","network":"eip155:84532","amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300,"extra":{"name":"USDC","version":"2"}})";

std::string payload(const std::string &extensions)
{
    return payload_head + extensions + "}";
}

void expect_decodes(const std::string &json)
{
    std::string h = x402::base64_encode(json);
    x402_verdict_t v;
    PaymentPtr p(x402_payment_decode(s(h), 2, &v));
    ASSERT_NE(p, nullptr) << (v.message ? v.message : "");
    EXPECT_EQ(p->json, json);
    EXPECT_EQ(to_string(v.payer), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    EXPECT_EQ(to_string(v.nonce), "0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0");
    EXPECT_EQ(p->signature.size(), 65u);
    EXPECT_EQ(p->extra_name, "USDC");
}

json_t *parse(const std::string &text)
{
    json_error_t e;
    return json_loadb(text.data(), text.size(), JSON_REJECT_DUPLICATES, &e);
}

TEST(JsonArena, ValuesOutsideADecodeLiveAcrossDecodes)
{
    // Made before a decode (maybe before the hooks are installed), freed
    // after one; made between decodes and grown during one.
    json_t *before = parse(R"({"a":"before","b":[1,2,3]})");
    ASSERT_NE(before, nullptr);
    expect_decodes(payload_head + "}");
    json_t *between = parse(R"({"isValid":true,"payer":"0xabc"})");
    ASSERT_NE(between, nullptr);
    expect_decodes(payload_head + "}");
    ASSERT_EQ(json_object_set_new(between, "grown", json_string("after a decode")),
              0);
    expect_decodes(payload_head + "}");
    EXPECT_STREQ(json_string_value(json_object_get(before, "a")), "before");
    EXPECT_STREQ(json_string_value(json_object_get(between, "grown")),
                 "after a decode");
    json_decref(before);
    json_decref(between);
}

TEST(JsonArena, PayloadLargerThanTheArena)
{
    // About 11 KiB of JSON: hundreds of values, well over the 16 KiB arena,
    // so most of the parse falls back to malloc and frees through it.
    std::string ext = R"(,"extensions":{)";
    for (int i = 0; i < 420; i++) {
        ext += (i ? "," : "") + std::string("\"k") + std::to_string(i) +
               R"(":{"v":"abcdefgh"})";
    }
    ext += "}";
    std::string json = payload(ext);
    ASSERT_GT(json.size(), 10000u);
    ASSERT_LT(x402::base64_encoded_len(json.size()),
              size_t(X402_MAX_HEADER_LEN));
    for (int i = 0; i < 3; i++) {
        expect_decodes(json);
    }
}

TEST(JsonArena, RejectedPayloadsLeaveNothingOpen)
{
    // A parse error and a shape error inside the arena, then a parse
    // outside it that must be an ordinary heap value.
    x402_verdict_t v;
    std::string bad = x402::base64_encode(R"({"x402Version":2,"a":1,"a":2})");
    EXPECT_EQ(x402_payment_decode(s(bad), 2, &v), nullptr);
    std::string shape = x402::base64_encode(R"({"x402Version":2,"accepted":[]})");
    EXPECT_EQ(x402_payment_decode(s(shape), 2, &v), nullptr);
    json_t *after = parse(R"({"x":"y"})");
    ASSERT_NE(after, nullptr);
    expect_decodes(payload_head + "}");
    EXPECT_STREQ(json_string_value(json_object_get(after, "x")), "y");
    json_decref(after);
}

}  // namespace
