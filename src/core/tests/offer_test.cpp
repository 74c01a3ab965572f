#include <gtest/gtest.h>
#include <jansson.h>

#include <memory>
#include <string>
#include <vector>

#include "base64.hpp"
#include "json_writer.hpp"
#include "offer.hpp"
#include "x402/x402.h"

namespace {

x402_str_t s(const char *p)
{
    return x402_str_t{p, std::char_traits<char>::length(p)};
}

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

struct JsonFree {
    void operator()(json_t *j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonFree>;

Json parse(const std::string &text)
{
    json_error_t e;
    Json j(json_loadb(text.data(), text.size(), JSON_REJECT_DUPLICATES, &e));
    EXPECT_TRUE(j) << e.text << " in " << text;
    return j;
}

std::string str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    EXPECT_TRUE(v && json_is_string(v)) << key;
    return v ? std::string(json_string_value(v), json_string_length(v)) : "";
}

long long num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    EXPECT_TRUE(v && json_is_integer(v)) << key;
    return v ? json_integer_value(v) : -1;
}

// The pool-like allocator the glue passes: storage lives until the test
// ends.
struct Pool {
    std::vector<std::unique_ptr<char[]>> blocks;
    size_t calls = 0;
    bool fail = false;
    static void *alloc(void *ctx, size_t n)
    {
        auto *p = static_cast<Pool *>(ctx);
        p->calls++;
        if (p->fail) {
            return nullptr;
        }
        p->blocks.emplace_back(new char[n]);
        return p->blocks.back().get();
    }
    x402_allocator_t a{&Pool::alloc, this};
};

x402_requirement_t base_sepolia(const char *amount = "1000")
{
    const x402_network_t *n = x402_network_find(s("base-sepolia"));
    x402_requirement_t r{};
    r.scheme = s("exact");
    r.network = n;
    r.amount = s(amount);
    r.asset = s(n->usdc);
    r.pay_to = s("0x209693bc6afc0c5328ba36faf03c514ef312287c");
    r.asset_name = s(n->usdc_name);
    r.asset_version = s(n->usdc_version);
    r.asset_decimals = n->usdc_decimals;
    r.max_timeout = 300;
    r.description = s("");
    r.mime_type = s("");
    return r;
}

struct OfferFree {
    void operator()(x402_offer_t *o) const { x402_offer_free(o); }
};
using Offer = std::unique_ptr<x402_offer_t, OfferFree>;

Offer make(const std::vector<x402_requirement_t> &reqs)
{
    const char *err = nullptr;
    Offer o(x402_offer_create(reqs.data(), reqs.size(), &err));
    EXPECT_TRUE(o) << (err ? err : "");
    return o;
}

struct Rendered {
    std::string header, body;
    Json v2, v1;
};

Rendered render(const x402_offer_t *o, const std::string &url,
                const std::string &error = "")
{
    Pool pool;
    x402_str_t h{}, b{};
    EXPECT_EQ(x402_offer_render(o, s(url), s(error), &pool.a, &h, &b), 0);
    Rendered r;
    r.header.assign(h.data, h.len);
    r.body.assign(b.data, b.len);
    auto decoded = x402::base64_decode(r.header);
    EXPECT_TRUE(decoded.has_value()) << r.header;
    r.v2 = parse(decoded.value_or(""));
    r.v1 = parse(r.body);
    return r;
}

TEST(Offer, V2HeaderRoundTrip)
{
    Offer o = make({base_sepolia()});
    Rendered r = render(o.get(), "http://localhost:4021/protected?a=1&b=2");
    // Standard padded base64 (RFC 4648 section 4; coinbase/x402
    // typescript/packages/core/src/utils/index.ts safeBase64Encode).
    EXPECT_EQ(r.header.size() % 4, 0u);
    EXPECT_EQ(r.header.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
              std::string::npos);
    json_t *v2 = r.v2.get();
    ASSERT_TRUE(v2);
    EXPECT_EQ(num(v2, "x402Version"), 2);
    EXPECT_EQ(str(v2, "error"), "Payment required");
    json_t *res = json_object_get(v2, "resource");
    ASSERT_TRUE(json_is_object(res));
    EXPECT_EQ(str(res, "url"), "http://localhost:4021/protected?a=1&b=2");
    EXPECT_EQ(str(res, "description"), "");
    EXPECT_EQ(str(res, "mimeType"), "");
    json_t *acc = json_object_get(v2, "accepts");
    ASSERT_TRUE(json_is_array(acc));
    ASSERT_EQ(json_array_size(acc), 1u);
    json_t *a0 = json_array_get(acc, 0);
    EXPECT_EQ(json_object_size(a0), 7u);
    EXPECT_EQ(str(a0, "scheme"), "exact");
    EXPECT_EQ(str(a0, "network"), "eip155:84532");
    EXPECT_EQ(str(a0, "amount"), "1000");
    EXPECT_EQ(str(a0, "asset"), "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    EXPECT_EQ(str(a0, "payTo"), "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    EXPECT_EQ(num(a0, "maxTimeoutSeconds"), 300);
    json_t *extra = json_object_get(a0, "extra");
    EXPECT_EQ(str(extra, "name"), "USDC");
    EXPECT_EQ(str(extra, "version"), "2");
    EXPECT_EQ(json_object_size(v2), 4u);
}

TEST(Offer, V1BodyRoundTrip)
{
    Offer o = make({base_sepolia()});
    Rendered r = render(o.get(), "https://api.example.com/premium");
    json_t *v1 = r.v1.get();
    ASSERT_TRUE(v1);
    EXPECT_EQ(num(v1, "x402Version"), 1);
    EXPECT_EQ(str(v1, "error"), "X-PAYMENT header is required");
    json_t *acc = json_object_get(v1, "accepts");
    ASSERT_EQ(json_array_size(acc), 1u);
    json_t *a0 = json_array_get(acc, 0);
    EXPECT_EQ(str(a0, "scheme"), "exact");
    EXPECT_EQ(str(a0, "network"), "base-sepolia");
    EXPECT_EQ(str(a0, "maxAmountRequired"), "1000");
    EXPECT_EQ(str(a0, "resource"), "https://api.example.com/premium");
    EXPECT_EQ(str(a0, "description"), "");
    EXPECT_EQ(str(a0, "mimeType"), "");
    EXPECT_EQ(str(a0, "payTo"), "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    EXPECT_EQ(num(a0, "maxTimeoutSeconds"), 300);
    EXPECT_EQ(str(a0, "asset"), "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    EXPECT_EQ(str(json_object_get(a0, "extra"), "name"), "USDC");
    EXPECT_EQ(str(json_object_get(a0, "extra"), "version"), "2");
    EXPECT_EQ(json_object_get(a0, "amount"), nullptr);
}

TEST(Offer, ErrorStringGoesToBoth)
{
    Offer o = make({base_sepolia()});
    Rendered r = render(o.get(), "http://h/x",
                        "invalid_exact_evm_payload_signature");
    EXPECT_EQ(str(r.v2.get(), "error"), "invalid_exact_evm_payload_signature");
    EXPECT_EQ(str(r.v1.get(), "error"), "invalid_exact_evm_payload_signature");
}

TEST(Offer, UrlAndErrorEscaping)
{
    Offer o = make({base_sepolia()});
    const std::string urls[] = {
        "http://h/a\"b\\c",
        "http://h/</script><script>alert(1)</script>",
        "http://h/\xc3\xa9t\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80",
        "http://h/\x01\x1f\x7f",
        "http://h/\xe2\x80\xa8\xe2\x80\xa9",
        "",
        std::string(5000, 'u'),
    };
    for (const std::string &u : urls) {
        for (const std::string &e : {std::string(), std::string("bad \"</x>\" &\n")}) {
            Rendered r = render(o.get(), u, e);
            ASSERT_TRUE(r.v2 && r.v1) << u;
            EXPECT_EQ(str(json_object_get(r.v2.get(), "resource"), "url"), u);
            EXPECT_EQ(str(json_array_get(json_object_get(r.v1.get(), "accepts"), 0),
                          "resource"),
                      u);
            if (!e.empty()) {
                EXPECT_EQ(str(r.v2.get(), "error"), e);
                EXPECT_EQ(str(r.v1.get(), "error"), e);
            }
            // Safe inside HTML: no raw '<', '>', '&' and no line separators.
            auto decoded = *x402::base64_decode(r.header);
            for (const std::string &t : {decoded, r.body}) {
                EXPECT_EQ(t.find_first_of("<>&\n\r"), std::string::npos) << t;
                EXPECT_EQ(t.find("\xe2\x80\xa8"), std::string::npos);
            }
        }
    }
}

TEST(Offer, InvalidUtf8BecomesReplacementCharacter)
{
    Offer o = make({base_sepolia()});
    Rendered r = render(o.get(), "http://h/\xff\xc0\xaf/\xed\xa0\x80/ok");
    ASSERT_TRUE(r.v2);
    EXPECT_EQ(str(json_object_get(r.v2.get(), "resource"), "url"),
              "http://h/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd/"
              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd/ok");
}

TEST(Offer, EveryPrefixLengthOfTheHeaderSplice)
{
    // The precomputed base64 covers a prefix of length 3k; vary the
    // description so that the remainder is 0, 1 and 2 bytes, and the URL
    // length so that the tail is every size mod 3.
    for (int d = 0; d < 3; d++) {
        std::string desc(size_t(d), 'd');
        x402_requirement_t r = base_sepolia();
        r.description = s(desc);
        Offer o = make({r});
        for (int u = 0; u < 6; u++) {
            std::string url = "http://h/" + std::string(size_t(u), 'p');
            Rendered out = render(o.get(), url);
            ASSERT_TRUE(out.v2) << d << ' ' << u;
            json_t *res = json_object_get(out.v2.get(), "resource");
            EXPECT_EQ(str(res, "url"), url);
            EXPECT_EQ(str(res, "description"), desc);
            // Same bytes as a one-shot encoding of the whole JSON.
            auto whole = *x402::base64_decode(out.header);
            EXPECT_EQ(x402::base64_encode(whole), out.header);
        }
    }
}

TEST(Offer, SeveralRequirementsAndLegacyFilter)
{
    x402_requirement_t a = base_sepolia("1000");
    x402_requirement_t b = base_sepolia("2000");
    const x402_network_t *base = x402_network_find(s("base"));
    b.network = base;
    b.asset = s(base->usdc);
    b.asset_name = s(base->usdc_name);
    b.description = s("second");  // v2 resource uses requirement 0
    x402_requirement_t c = base_sepolia("3000");
    const x402_network_t *eth = x402_network_find(s("ethereum"));
    c.network = eth;  // not in the legacy x402 package's enum
    c.asset = s(eth->usdc);
    c.asset_name = s(eth->usdc_name);
    Offer o = make({a, b, c});
    EXPECT_EQ(x402_offer_count(o.get()), 3u);
    Rendered r = render(o.get(), "http://h/r");
    json_t *acc2 = json_object_get(r.v2.get(), "accepts");
    ASSERT_EQ(json_array_size(acc2), 3u);
    EXPECT_EQ(str(json_array_get(acc2, 1), "network"), "eip155:8453");
    EXPECT_EQ(str(json_object_get(json_array_get(acc2, 1), "extra"), "name"),
              "USD Coin");
    EXPECT_EQ(str(json_array_get(acc2, 2), "network"), "eip155:1");
    EXPECT_EQ(str(json_object_get(r.v2.get(), "resource"), "description"), "");
    json_t *acc1 = json_object_get(r.v1.get(), "accepts");
    ASSERT_EQ(json_array_size(acc1), 2u);
    EXPECT_EQ(str(json_array_get(acc1, 0), "network"), "base-sepolia");
    EXPECT_EQ(str(json_array_get(acc1, 1), "network"), "base");
    EXPECT_EQ(str(json_array_get(acc1, 1), "description"), "second");
    EXPECT_EQ(str(json_array_get(acc1, 1), "resource"), "http://h/r");
}

TEST(Offer, NoLegacyNetworkGivesEmptyV1Accepts)
{
    x402_requirement_t c = base_sepolia();
    const x402_network_t *arb = x402_network_find(s("eip155:42161"));
    c.network = arb;
    c.asset = s(arb->usdc);
    c.asset_name = s(arb->usdc_name);
    Offer o = make({c});
    Rendered r = render(o.get(), "http://h/r");
    EXPECT_EQ(json_array_size(json_object_get(r.v1.get(), "accepts")), 0u);
    EXPECT_EQ(json_array_size(json_object_get(r.v2.get(), "accepts")), 1u);
}

TEST(Offer, GetReturnsOwnedCanonicalCopies)
{
    std::string amount = "0001000";
    std::string pay_to = "0x209693bc6afc0c5328ba36faf03c514ef312287c";
    x402_requirement_t r = base_sepolia();
    r.amount = s(amount);
    r.pay_to = s(pay_to);
    Offer o = make({r});
    amount.assign("9999999");  // the offer must not point at caller storage
    pay_to.assign(pay_to.size(), 'z');
    const x402_requirement_t *g = x402_offer_get(o.get(), 0);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(std::string(g->amount.data, g->amount.len), "1000");
    EXPECT_EQ(std::string(g->pay_to.data, g->pay_to.len),
              "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    EXPECT_EQ(std::string(g->scheme.data, g->scheme.len), "exact");
    EXPECT_EQ(g->max_timeout, 300u);
    EXPECT_EQ(x402_offer_get(o.get(), 1), nullptr);
    EXPECT_EQ(x402_offer_count(nullptr), 0u);
}

TEST(Offer, RequirementJsonForTheFacilitator)
{
    Offer o = make({base_sepolia()});
    Json v2 = parse(std::string(o->v2_json(0)));
    EXPECT_EQ(str(v2.get(), "amount"), "1000");
    EXPECT_EQ(str(v2.get(), "network"), "eip155:84532");
    Json v1 = parse(o->v1_json(0, "http://h/\"q\""));
    EXPECT_EQ(str(v1.get(), "resource"), "http://h/\"q\"");
    EXPECT_EQ(str(v1.get(), "network"), "base-sepolia");
    EXPECT_EQ(str(v1.get(), "maxAmountRequired"), "1000");
}

TEST(Offer, CreateRejects)
{
    std::string bad_addr = "0x209693Bc6afc0C5328bA36FaF03C514EF312287c";
    struct Case {
        const char *rule;
        void (*edit)(x402_requirement_t &, const std::string &);
    };
    const Case cases[] = {
        {"scheme", [](x402_requirement_t &r, const std::string &) { r.scheme = s(""); }},
        {"scheme", [](x402_requirement_t &r, const std::string &) { r.scheme = s("Exact"); }},
        {"network", [](x402_requirement_t &r, const std::string &) { r.network = nullptr; }},
        {"amount", [](x402_requirement_t &r, const std::string &) { r.amount = s("1.5"); }},
        {"amount", [](x402_requirement_t &r, const std::string &) { r.amount = s(""); }},
        {"positive", [](x402_requirement_t &r, const std::string &) { r.amount = s("0"); }},
        {"asset", [](x402_requirement_t &r, const std::string &a) { r.asset = s(a); }},
        {"payTo", [](x402_requirement_t &r, const std::string &) { r.pay_to = s("0x12"); }},
        {"name", [](x402_requirement_t &r, const std::string &) { r.asset_name = s(""); }},
        {"version", [](x402_requirement_t &r, const std::string &) { r.asset_version = s(""); }},
        {"decimals", [](x402_requirement_t &r, const std::string &) { r.asset_decimals = 78; }},
        {"maxTimeoutSeconds", [](x402_requirement_t &r, const std::string &) { r.max_timeout = 0; }},
        {"maxTimeoutSeconds", [](x402_requirement_t &r, const std::string &) { r.max_timeout = 1ull << 40; }},
    };
    for (const Case &c : cases) {
        x402_requirement_t r = base_sepolia();
        c.edit(r, bad_addr);
        const char *err = nullptr;
        x402_offer_t *o = x402_offer_create(&r, 1, &err);
        EXPECT_EQ(o, nullptr) << c.rule;
        x402_offer_free(o);
        ASSERT_NE(err, nullptr) << c.rule;
        EXPECT_NE(std::string(err).find(c.rule), std::string::npos)
            << c.rule << ": " << err;
    }
    const char *err = nullptr;
    EXPECT_EQ(x402_offer_create(nullptr, 0, &err), nullptr);
    EXPECT_NE(err, nullptr);
    std::vector<x402_requirement_t> many(17, base_sepolia());
    EXPECT_EQ(x402_offer_create(many.data(), many.size(), &err), nullptr);
    EXPECT_NE(std::string(err).find("16"), std::string::npos);
    std::string long_desc(4097, 'x');
    x402_requirement_t r = base_sepolia();
    r.description = s(long_desc);
    EXPECT_EQ(x402_offer_create(&r, 1, &err), nullptr);
}

TEST(Offer, RenderAllocationFailure)
{
    Offer o = make({base_sepolia()});
    Pool pool;
    pool.fail = true;
    x402_str_t h{}, b{};
    EXPECT_EQ(x402_offer_render(o.get(), s("http://h/"), s(""), &pool.a, &h, &b),
              -1);
    EXPECT_EQ(x402_offer_render(nullptr, s("http://h/"), s(""), &pool.a, &h, &b),
              -1);
}

TEST(Offer, RenderIsOneAllocation)
{
    x402_requirement_t second = base_sepolia("5");
    const x402_network_t *base = x402_network_find(s("base"));
    second.network = base;
    second.asset = s(base->usdc);
    Offer o = make({base_sepolia(), second});
    Pool pool;
    x402_str_t h{}, b{};
    ASSERT_EQ(x402_offer_render(o.get(), s("http://h/"), s(""), &pool.a, &h, &b),
              0);
    EXPECT_EQ(pool.calls, 1u);
}

TEST(JsonWriter, Escapes)
{
    std::string out;
    x402::json_append_string(out, std::string("a\"\\\b\f\n\r\t\x01<>&\x7f", 13));
    EXPECT_EQ(out,
              "\"a\\\"\\\\\\u0008\\u000c\\n\\r\\t\\u0001\\u003c\\u003e\\u0026\\u007f\"");
    EXPECT_EQ(x402::json_escaped_len("\xc3\xa9"), 2u);  // passes through
    EXPECT_EQ(x402::json_escaped_len("\xc3"), 6u);       // truncated: U+FFFD
    EXPECT_EQ(x402::json_escaped_len("\xf4\x90\x80\x80"), 24u);  // > U+10FFFF
    EXPECT_EQ(x402::json_escaped_len(std::string("\0", 1)), 6u);
}

}  // namespace
