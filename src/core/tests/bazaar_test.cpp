// The bazaar discovery extension (issue 12 item 5, core half): built as the
// official server builds it, carried in the v2 402's `extensions`, within
// bounds that keep a client's echo decodable by our own payment decoder,
// and accepted by the official @x402/extensions validation
// (js/extensions-check/bazaar-check.mjs, which also compares byte for byte
// with declareDiscoveryExtension + enrichDeclaration).
#include <gtest/gtest.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base64.hpp"
#include "bazaar.hpp"
#include "json_writer.hpp"
#include "offer.hpp"
#include "x402/x402.h"

namespace {

const std::string repo = std::string(X402_TEST_DATA_DIR) + "/../../../..";

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

x402_requirement_t base_sepolia()
{
    static const std::string scheme = "exact", amount = "10000",
                             pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                             name = "USDC", version = "2", desc = "weather",
                             mime = "application/json";
    x402_requirement_t r{};
    r.scheme = s(scheme);
    r.network = x402_network_find(x402_str_t{"base-sepolia", 12});
    r.amount = s(amount);
    r.asset = x402_str_t{r.network->usdc, 42};
    r.pay_to = s(pay_to);
    r.asset_name = s(name);
    r.asset_version = s(version);
    r.asset_decimals = 6;
    r.max_timeout = 300;
    r.description = s(desc);
    r.mime_type = s(mime);
    return r;
}

std::string bazaar(const x402::BazaarInput &in, std::string *error = nullptr)
{
    const char *err = nullptr;
    auto j = x402::bazaar_extensions(in, &err);
    if (error != nullptr) {
        *error = err ? err : "";
    }
    return j ? *j : "";
}

struct OfferFree {
    void operator()(x402_offer_t *o) const { x402_offer_free(o); }
};
using Offer = std::unique_ptr<x402_offer_t, OfferFree>;

// The PAYMENT-REQUIRED header of an offer carrying `ext`.
std::string header_with(const std::string &ext, std::string *body = nullptr)
{
    x402_requirement_t r = base_sepolia();
    const char *err = nullptr;
    Offer o(x402_offer_create_ext(&r, 1, s(ext), &err));
    EXPECT_TRUE(o) << (err ? err : "");
    if (!o) {
        return "";
    }
    std::string h, b;
    o->render("https://api.example.com/weather?city=Paris", "", h, b);
    if (body != nullptr) {
        *body = b;
    }
    return h;
}

// A JSON object nested `levels` deep: {"properties":{"properties":{}}}.
std::string nest(int levels)
{
    std::string o;
    for (int i = 0; i < levels; i++) {
        o += i + 1 < levels ? "{\"properties\":" : "{";
    }
    return o + std::string(size_t(levels), '}');
}

const std::string city_schema =
    R"({"properties":{"city":{"type":"string","description":"City name"}},"required":["city"]})";
const std::string weather_example = R"({"city":"Paris","weather":"foggy","temperature":12})";
const std::string weather_schema =
    R"({"properties":{"weather":{"type":"string"},"temperature":{"type":"number"}}})";

}  // namespace

TEST(Bazaar, QueryFormAsTheOfficialServerBuildsIt)
{
    std::string j = bazaar({"GET", R"({"city":"Paris"})", "", "", city_schema, weather_example,
                            weather_schema});
    EXPECT_EQ(j,
              R"({"bazaar":{"info":{"input":{"type":"http","method":"GET","queryParams":{"city":"Paris"}},)"
              R"("output":{"type":"json","example":{"city":"Paris","weather":"foggy","temperature":12}}},)"
              R"("schema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",)"
              R"("properties":{"input":{"type":"object","properties":{"type":{"type":"string","const":"http"},)"
              R"("method":{"type":"string","enum":["GET"]},"queryParams":{"type":"object","properties":)"
              R"({"city":{"type":"string","description":"City name"}},"required":["city"]}},)"
              R"("required":["type","method"],"additionalProperties":false},)"
              R"("output":{"type":"object","properties":{"type":{"type":"string"},"example":{"type":"object",)"
              R"("properties":{"weather":{"type":"string"},"temperature":{"type":"number"}}}},)"
              R"("required":["type"]}},"required":["input"]}}})");
    // Nothing declared but the method: empty examples, the default schema,
    // no output.
    EXPECT_EQ(bazaar({"HEAD", "", "", "", "", "", ""}),
              R"({"bazaar":{"info":{"input":{"type":"http","method":"HEAD","queryParams":{}}},)"
              R"("schema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",)"
              R"("properties":{"input":{"type":"object","properties":{"type":{"type":"string","const":"http"},)"
              R"("method":{"type":"string","enum":["HEAD"]},"queryParams":{"type":"object","properties":{}}},)"
              R"("required":["type","method"],"additionalProperties":false}},"required":["input"]}}})");
}

TEST(Bazaar, BodyForm)
{
    std::string j = bazaar({"POST", "", "json", R"({"query":"example"})",
                            R"({"type":"object","properties":{"query":{"type":"string"}}})", "", ""});
    EXPECT_NE(j.find(R"("input":{"type":"http","method":"POST","bodyType":"json","body":{"query":"example"}})"),
              std::string::npos)
        << j;
    EXPECT_NE(j.find(R"("bodyType":{"type":"string","enum":["json","form-data","text"]},"body":{"type":"object")"),
              std::string::npos)
        << j;
    EXPECT_NE(j.find(R"("required":["type","method","bodyType","body"])"), std::string::npos) << j;
    // A text body is a string example.
    EXPECT_NE(bazaar({"PUT", "", "text", R"("hello")", "", "", ""}).find(R"("body":"hello")"),
              std::string::npos);
}

TEST(Bazaar, RefusesNamingTheRule)
{
    std::string e;
    EXPECT_EQ(bazaar({"OPTIONS", "", "", "", "", "", ""}, &e), "");
    EXPECT_EQ(e, "the bazaar method must be GET, HEAD, DELETE, POST, PUT or PATCH");
    EXPECT_EQ(bazaar({"get", "", "", "", "", "", ""}, &e), "");
    EXPECT_EQ(bazaar({"GET", "[1]", "", "", "", "", ""}, &e), "");
    EXPECT_NE(e.find("query parameters must be a JSON object"), std::string::npos);
    EXPECT_EQ(bazaar({"GET", "{\"a\":1,\"a\":2}", "", "", "", "", ""}, &e), "");
    EXPECT_NE(e.find("query parameters"), std::string::npos);
    EXPECT_EQ(bazaar({"GET", "", "json", "", "", "", ""}, &e), "");
    EXPECT_EQ(e, "a bazaar body type or body belongs to POST, PUT or PATCH");
    EXPECT_EQ(bazaar({"POST", "{}", "json", "", "", "", ""}, &e), "");
    EXPECT_EQ(e, "bazaar query parameters belong to GET, HEAD or DELETE");
    EXPECT_EQ(bazaar({"POST", "", "xml", "", "", "", ""}, &e), "");
    EXPECT_EQ(e, "the bazaar body type must be json, form-data or text");
    EXPECT_EQ(bazaar({"POST", "", "json", "12", "", "", ""}, &e), "");
    EXPECT_NE(e.find("body example must be a JSON object or string"), std::string::npos);
    EXPECT_EQ(bazaar({"GET", "", "", "", "", "", "{}"}, &e), "");
    EXPECT_EQ(e, "a bazaar output schema needs an output example");
    EXPECT_EQ(bazaar({"GET", "", "", "", "", "[]", ""}, &e), "");
    EXPECT_NE(e.find("output example must be a JSON object"), std::string::npos);
    // Depth: 8 levels pass, 9 do not.
    EXPECT_NE(bazaar({"GET", "", "", "", nest(8), "", ""}, &e), "") << e;
    EXPECT_EQ(bazaar({"GET", "", "", "", nest(9), "", ""}, &e), "");
    EXPECT_NE(e.find("8 levels"), std::string::npos) << e;
    // Size: each input and the whole.
    std::string big = "{\"a\":\"" + std::string(8200, 'x') + "\"}";
    EXPECT_EQ(bazaar({"GET", big, "", "", "", "", ""}, &e), "");
    EXPECT_NE(e.find("8192 bytes"), std::string::npos);
    std::string half = "{\"a\":\"" + std::string(4000, 'x') + "\"}";
    EXPECT_EQ(bazaar({"GET", half, "", "", "", half, ""}, &e), "");
    EXPECT_NE(e.find("client's echo"), std::string::npos) << e;
}

TEST(Bazaar, CApi)
{
    std::vector<std::string> blocks;
    x402_allocator_t a{[](void *ctx, size_t n) -> void * {
                           auto *b = static_cast<std::vector<std::string> *>(ctx);
                           b->emplace_back(n, '\0');
                           return b->back().data();
                       },
                       &blocks};
    x402_bazaar_t b{};
    std::string m = "GET", q = R"({"city":"Paris"})";
    b.method = s(m);
    b.query_params = s(q);
    x402_str_t out{};
    const char *err = nullptr;
    ASSERT_EQ(x402_bazaar_render(&b, &a, &out, &err), 0) << err;
    EXPECT_EQ(std::string(out.data, out.len), bazaar({"GET", q, "", "", "", "", ""}));
    std::string bad = "TRACE";
    b.method = s(bad);
    EXPECT_EQ(x402_bazaar_render(&b, &a, &out, &err), -1);
    EXPECT_STREQ(err, "the bazaar method must be GET, HEAD, DELETE, POST, PUT or PATCH");
}

TEST(Bazaar, OfferCarriesExtensionsInV2Only)
{
    std::string ext = bazaar({"GET", R"({"city":"Paris"})", "", "", city_schema, "", ""});
    std::string body;
    std::string h = header_with(ext, &body);
    auto json = x402::base64_decode(h);
    ASSERT_TRUE(json);
    json_t *pr = json_loads(json->c_str(), JSON_REJECT_DUPLICATES, nullptr);
    ASSERT_TRUE(pr) << *json;
    char *dumped = json_dumps(json_object_get(pr, "extensions"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    EXPECT_EQ(std::string(dumped), ext);
    std::free(dumped);
    EXPECT_EQ(json_array_size(json_object_get(pr, "accepts")), 1u);
    EXPECT_STREQ(json_string_value(json_object_get(json_object_get(pr, "resource"), "url")),
                 "https://api.example.com/weather?city=Paris");
    json_decref(pr);
    EXPECT_EQ(body.find("extensions"), std::string::npos);
    EXPECT_EQ(body.find("bazaar"), std::string::npos);

    x402_requirement_t r = base_sepolia();
    const char *err = nullptr;
    for (std::string bad : {"[]", "{\"a\":1", "{\"a\":1,\"a\":2}", "\"x\""}) {
        EXPECT_EQ(x402_offer_create_ext(&r, 1, s(bad), &err), nullptr) << bad;
        EXPECT_STREQ(err, "extensions must be a JSON object of at most 8192 bytes and 14 levels");
    }
}

// The official client echoes the 402's extensions in its payment: the
// biggest, deepest extension the core emits must still decode.
TEST(Bazaar, EchoFitsThePaymentDecoder)
{
    std::string ext;
    for (size_t pad = 4200; pad > 0; pad -= 10) {
        std::string p = "{\"a\":\"" + std::string(pad, 'x') + "\"}";
        ext = bazaar({"GET", p, "", "", nest(8), p, nest(8)});
        if (!ext.empty()) {
            break;
        }
    }
    ASSERT_FALSE(ext.empty());
    EXPECT_GT(ext.size(), 8000u);
    std::string h = header_with(ext);
    auto pr = x402::base64_decode(h);
    ASSERT_TRUE(pr);
    json_t *prj = json_loads(pr->c_str(), 0, nullptr);
    ASSERT_TRUE(prj);
    char *accepted = json_dumps(json_array_get(json_object_get(prj, "accepts"), 0), JSON_COMPACT);
    char *resource = json_dumps(json_object_get(prj, "resource"), JSON_COMPACT);
    std::string payload =
        std::string("{\"x402Version\":2,\"resource\":") + resource + ",\"accepted\":" + accepted
        + ",\"payload\":{\"signature\":\"0x" + std::string(130, '1')
        + "\",\"authorization\":{\"from\":\"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\","
          "\"to\":\"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\",\"value\":\"10000\","
          "\"validAfter\":\"0\",\"validBefore\":\"1900000000\",\"nonce\":\"0x"
        + std::string(64, 'a') + "\"}},\"extensions\":" + ext + "}";
    std::free(accepted);
    std::free(resource);
    json_decref(prj);
    std::string header = x402::base64_encode(payload);
    EXPECT_LE(header.size(), size_t(X402_MAX_HEADER_LEN));
    x402_verdict_t v;
    x402_payment_t *p = x402_payment_decode(s(header), 2, &v);
    EXPECT_NE(p, nullptr) << (v.message ? v.message : "");
    x402_payment_free(p);
}

namespace {

bool have_extensions()
{
    struct stat st;
    return stat((repo + "/js/extensions-check/node_modules/@x402/extensions").c_str(), &st) == 0
           && std::system("node --version > /dev/null 2>&1") == 0;
}

// The declareDiscoveryExtension config the official server would be given
// for the same declaration.
std::string official_config(const x402::BazaarInput &in)
{
    std::string c = "{";
    x402::json_append_member(c, "method", in.method, true);
    auto raw = [&](const char *key, std::string_view v) {
        if (!v.empty()) {
            c += ",\"";
            c += key;
            c += "\":";
            c += v;
        }
    };
    raw("input", in.query_params.empty() ? in.body : in.query_params);
    raw("inputSchema", in.input_schema);
    if (!in.body_type.empty()) {
        x402::json_append_member(c, "bodyType", in.body_type);
    }
    if (!in.output_example.empty()) {
        c += ",\"output\":{\"example\":";
        c += in.output_example;
        if (!in.output_schema.empty()) {
            c += ",\"schema\":";
            c += in.output_schema;
        }
        c += '}';
    }
    return c + "}";
}

}  // namespace

TEST(Bazaar, OfficialExtensionsPackageAccepts)
{
    if (!have_extensions()) {
        GTEST_SKIP() << "node or js/extensions-check/node_modules (npm ci there) missing";
    }
    struct Case {
        const char *name;
        x402::BazaarInput in;
    };
    const std::vector<Case> cases = {
        {"get-full", {"GET", R"({"city":"Paris"})", "", "", city_schema, weather_example, weather_schema}},
        {"get-bare", {"GET", "", "", "", "", "", ""}},
        {"head", {"HEAD", R"({"id":"1"})", "", "", "", "", ""}},
        {"delete-output", {"DELETE", R"({"id":"1"})", "", "", "", R"({"deleted":true})", ""}},
        {"post-json", {"POST", "", "json", R"({"query":"example"})",
                       R"({"type":"object","properties":{"query":{"type":"string"}},"required":["query"]})",
                       R"({"results":[]})", ""}},
        {"put-text", {"PUT", "", "text", R"("hello")", "", "", ""}},
        {"patch-form", {"PATCH", "", "form-data", R"({"name":"x"})", "", "", ""}},
    };
    std::string in = "[";
    for (const Case &c : cases) {
        std::string ext = bazaar(c.in);
        ASSERT_FALSE(ext.empty()) << c.name;
        in += std::string(in.size() > 1 ? "," : "") + "{";
        x402::json_append_member(in, "name", c.name, true);
        x402::json_append_member(in, "header", header_with(ext));
        in += ",\"config\":" + official_config(c.in);
        x402::json_append_member(in, "expect", "ok");
        in += "}";
    }
    // The check bites: an info that its schema refuses (method outside the
    // narrowed enum), and a query example missing a required parameter.
    std::string tampered = bazaar(cases[0].in);
    tampered.replace(tampered.find("\"enum\":[\"GET\"]"), 14, "\"enum\":[\"HEAD\"]");
    in += ",{";
    x402::json_append_member(in, "name", "tampered-method", true);
    x402::json_append_member(in, "header", header_with(tampered));
    in += ",\"config\":" + official_config(cases[0].in);
    x402::json_append_member(in, "expect", "invalid");
    in += "},{";
    x402::BazaarInput missing = cases[0].in;
    missing.query_params = R"({"town":"Paris"})";
    x402::json_append_member(in, "name", "missing-required-param", true);
    x402::json_append_member(in, "header", header_with(bazaar(missing)));
    in += ",\"config\":" + official_config(missing);
    x402::json_append_member(in, "expect", "invalid");
    in += "}]";

    std::string file = "/tmp/x402-bazaar-" + std::to_string(getpid()) + ".json";
    std::ofstream(file) << in;
    std::string out = file + ".out";
    std::string cmd = "cd " + repo + "/js/extensions-check && node bazaar-check.mjs < " + file
                      + " > " + out + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    EXPECT_EQ(rc, 0) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), long(cases.size() + 2)) << text;
    std::remove(file.c_str());
    std::remove(out.c_str());
}
