// GET /supported (issue 12 item 3): the official facilitator's real answer
// (captured from js/interop/print-supported.mjs into
// data/supported-official.json, and live when node is there), a CDP-style
// answer with per-kind extra and extensions, lookups, and every bound.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "supported.hpp"
#include "x402/x402.h"

namespace {

const std::string data_dir = std::string(X402_TEST_DATA_DIR) + "/";
const std::string repo = std::string(X402_TEST_DATA_DIR) + "/../../../..";

std::string slurp(const std::string &path)
{
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

struct Blocks {
    std::vector<std::string> b;
    static void *alloc(void *ctx, size_t n)
    {
        auto *self = static_cast<Blocks *>(ctx);
        self->b.emplace_back(n, '\0');
        return self->b.back().data();
    }
};

struct Parsed {
    Blocks blocks;
    x402_allocator_t a{&Blocks::alloc, &blocks};
    x402_str_t err{};
    x402_supported_t *p = nullptr;
    Parsed(int status, const std::string &body)
    {
        p = x402_supported_parse(status, s(body), &a, &err);
    }
    ~Parsed() { x402_supported_free(p); }
    std::string error() const { return std::string(err.data ? err.data : "", err.len); }
    bool has(int v, const std::string &scheme, const std::string &net,
             std::string *extra = nullptr) const
    {
        x402_str_t e{};
        int r = x402_supported_find(p, v, s(scheme), s(net), &e);
        if (extra != nullptr) {
            *extra = std::string(e.data ? e.data : "", e.len);
        }
        return r == 1;
    }
};

// What Coinbase's hosted facilitator answers (shape of spec 7.3 with the
// Solana fee payer in extra that the official SVM server scheme copies into
// requirements, @x402/svm exact/server enhancePaymentRequirements).
const std::string cdp_like = R"({
  "kinds": [
    {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"},
    {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
    {"x402Version": 1, "scheme": "exact", "network": "base"},
    {"x402Version": 2, "scheme": "exact",
     "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
     "extra": {"feePayer": "L54zkaPQFeTn1UsEqieEXBqWrPShiaZEPD7mS5WXfQg"}}
  ],
  "extensions": ["bazaar"],
  "signers": {"eip155:*": ["0x1234567890abcdef1234567890abcdef12345678"],
              "solana:*": ["CKPKJWNdJEqa81x7CkZ14BVPiY6y16Sxs7owznqtWYp5"]}
})";

x402_requirement_t requirement(const char *network)
{
    x402_requirement_t r{};
    r.scheme = {"exact", 5};
    r.network = x402_network_find(x402_str_t{network, std::strlen(network)});
    return r;
}

}  // namespace

TEST(Supported, OfficialFacilitatorAnswer)
{
    Parsed p(200, slurp(data_dir + "supported-official.json"));
    ASSERT_NE(p.p, nullptr) << p.error();
    EXPECT_EQ(x402_supported_count(p.p), 2u);
    std::string extra = "x";
    EXPECT_TRUE(p.has(2, "exact", "eip155:84532", &extra));
    EXPECT_EQ(extra, "");
    EXPECT_TRUE(p.has(1, "exact", "base-sepolia"));
    EXPECT_FALSE(p.has(2, "exact", "eip155:8453"));
    EXPECT_FALSE(p.has(1, "exact", "eip155:84532"));  // version is part of the kind
    EXPECT_FALSE(p.has(2, "upto", "eip155:84532"));
    EXPECT_FALSE(x402_supported_has_extension(p.p, x402_str_t{"bazaar", 6}));

    int v1 = -1;
    auto r = requirement("base-sepolia");
    EXPECT_EQ(x402_supported_requirement(p.p, &r, &v1), 1);
    EXPECT_EQ(v1, 1);
    r = requirement("base");
    EXPECT_EQ(x402_supported_requirement(p.p, &r, &v1), 0);
    EXPECT_EQ(v1, 0);
}

// The same, live from the installed @x402/core, so an upgrade that changes
// the shape shows here.
TEST(Supported, OfficialFacilitatorAnswerLive)
{
    struct stat st;
    if (stat((repo + "/js/node_modules/@x402/core").c_str(), &st) != 0
        || std::system("node --version > /dev/null 2>&1") != 0) {
        GTEST_SKIP() << "node or js/node_modules missing";
    }
    std::string out = "/tmp/x402-supported-" + std::to_string(getpid()) + ".json";
    std::string cmd = "node " + repo + "/js/interop/print-supported.mjs > " + out;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::string body = slurp(out);
    std::remove(out.c_str());
    Parsed p(200, body);
    ASSERT_NE(p.p, nullptr) << p.error() << "\n" << body;
    EXPECT_TRUE(p.has(2, "exact", "eip155:84532"));
    EXPECT_TRUE(p.has(1, "exact", "base-sepolia"));
}

TEST(Supported, KindsCarryExtraAndExtensions)
{
    Parsed p(200, cdp_like);
    ASSERT_NE(p.p, nullptr) << p.error();
    EXPECT_EQ(x402_supported_count(p.p), 4u);
    std::string extra;
    EXPECT_TRUE(p.has(2, "exact", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", &extra));
    EXPECT_EQ(extra, R"({"feePayer":"L54zkaPQFeTn1UsEqieEXBqWrPShiaZEPD7mS5WXfQg"})");
    EXPECT_TRUE(p.has(2, "exact", "eip155:8453", &extra));
    EXPECT_EQ(extra, "");
    EXPECT_TRUE(x402_supported_has_extension(p.p, x402_str_t{"bazaar", 6}));
    EXPECT_FALSE(x402_supported_has_extension(p.p, x402_str_t{"bazaa", 5}));

    int v1 = -1;
    auto r = requirement("base");
    EXPECT_EQ(x402_supported_requirement(p.p, &r, &v1), 1);
    EXPECT_EQ(v1, 1);
    r = requirement("base-sepolia");  // v2 only there
    EXPECT_EQ(x402_supported_requirement(p.p, &r, &v1), 1);
    EXPECT_EQ(v1, 0);
    r = requirement("polygon");
    EXPECT_EQ(x402_supported_requirement(p.p, &r, &v1), 0);
}

TEST(Supported, OlderFacilitatorsWithoutExtensionsOrSigners)
{
    Parsed p(200, R"({"kinds":[{"x402Version":1,"scheme":"exact","network":"base-sepolia"}]})");
    ASSERT_NE(p.p, nullptr) << p.error();
    EXPECT_TRUE(p.has(1, "exact", "base-sepolia"));
    Parsed q(200, R"({"kinds":[],"extensions":null,"signers":null,"future":{"x":1}})");
    ASSERT_NE(q.p, nullptr) << q.error();
    EXPECT_EQ(x402_supported_count(q.p), 0u);
}

TEST(Supported, RefusesNamingTheMember)
{
    auto refused = [](int status, const std::string &body) {
        Parsed p(status, body);
        EXPECT_EQ(p.p, nullptr) << body;
        return p.error();
    };
    auto kind = [](const std::string &fields) {
        return R"({"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:8453"},)"
               + fields + "]}";
    };
    EXPECT_EQ(refused(500, cdp_like), "facilitator /supported: answered HTTP 500");
    EXPECT_EQ(refused(200, "[]"), "facilitator /supported: answer is not a JSON object");
    EXPECT_EQ(refused(200, "{\"kinds\":[],\"kinds\":[]}"),
              "facilitator /supported: answer is not a JSON object");
    EXPECT_EQ(refused(200, "{}"), "facilitator /supported: kinds is missing or not an array");
    EXPECT_EQ(refused(200, kind("1")), "facilitator /supported: kinds[1] is not an object");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":"2","scheme":"exact","network":"n"})")),
              "facilitator /supported: kinds[1].x402Version is not an integer 1..255");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":0,"scheme":"exact","network":"n"})")),
              "facilitator /supported: kinds[1].x402Version is not an integer 1..255");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":2,"scheme":"","network":"n"})")),
              "facilitator /supported: kinds[1].scheme is not 1..64 printable characters");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":2,"scheme":"exact","network":"a b"})")),
              "facilitator /supported: kinds[1].network is not 1..128 printable characters");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":2,"scheme":"exact","network":")"
                                + std::string(129, 'n') + "\"}")),
              "facilitator /supported: kinds[1].network is not 1..128 printable characters");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":2,"scheme":"exact","network":"n","extra":[]})")),
              "facilitator /supported: kinds[1].extra is not an object");
    EXPECT_EQ(refused(200, kind(R"({"x402Version":2,"scheme":"exact","network":"n","extra":{"a":")"
                                + std::string(4100, 'x') + "\"}}")),
              "facilitator /supported: kinds[1].extra is over 4096 bytes");
    EXPECT_EQ(refused(200, R"({"kinds":[],"extensions":"bazaar"})"),
              "facilitator /supported: extensions is not an array of at most 64");
    EXPECT_EQ(refused(200, R"({"kinds":[],"extensions":[1]})"),
              "facilitator /supported: extensions[0] is not 1..64 printable characters");
    EXPECT_EQ(refused(200, R"({"kinds":[],"signers":[]})"),
              "facilitator /supported: signers is not an object of at most 64 patterns");
    EXPECT_EQ(refused(200, R"({"kinds":[],"signers":{"eip155:*":"0x1"}})"),
              "facilitator /supported: signers[\"eip155:*\"] is not a list of at most 64");
    EXPECT_EQ(refused(200, R"({"kinds":[],"signers":{"a\nb":[]}})"),
              "facilitator /supported: a signers pattern is not 1..128 printable characters");

    // Counts and sizes.
    std::string many = "{\"kinds\":[";
    for (int i = 0; i < 257; i++) {
        many += std::string(i ? "," : "")
                + R"({"x402Version":2,"scheme":"exact","network":"eip155:1"})";
    }
    many += "]}";
    EXPECT_EQ(refused(200, many), "facilitator /supported: more than 256 kinds");
    EXPECT_EQ(refused(200, "{\"kinds\":[],\"pad\":\"" + std::string(70000, 'x') + "\"}"),
              "facilitator /supported: answer is over 65536 bytes");
    EXPECT_EQ(refused(200, "{\"kinds\":[],\"x\":" + std::string(20, '[') + std::string(20, ']')
                               + "}"),
              "facilitator /supported: answer nests deeper than 16");
}
