// Feeds rendered 402s to the official npm parsers through js/check-402.mjs
// (issue 2 item 5). Skipped when node or js/node_modules is missing; the
// nginx-level test does the same against the running module.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base64.hpp"
#include "json_writer.hpp"
#include "x402/x402.h"

namespace {

const std::string repo = std::string(X402_TEST_DATA_DIR) + "/../../../..";

bool have_node()
{
    struct stat st;
    std::string mods = repo + "/js/node_modules/@x402/core";
    return stat(mods.c_str(), &st) == 0
           && std::system("node --version > /dev/null 2>&1") == 0;
}

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

void *heap(void *ctx, size_t n)
{
    auto *blocks = static_cast<std::vector<std::string> *>(ctx);
    blocks->emplace_back(n, '\0');
    return blocks->back().data();
}

// Runs the checker on {header, body}; returns its exit status and output.
int check(const std::string &header, const std::string &body,
          std::string &output, const std::string &flags = "")
{
    char dir[] = "/tmp/x402-check-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
        return -1;
    }
    std::string in = std::string(dir) + "/in.json";
    std::string out = std::string(dir) + "/out.txt";
    std::string j = "{";
    x402::json_append_member(j, "header", header, true);
    x402::json_append_member(j, "body", body);
    j += '}';
    std::ofstream(in) << j;
    std::string cmd = "node " + repo + "/js/check-402.mjs " + flags + " < " + in
                      + " > " + out + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream f(out);
    output.assign(std::istreambuf_iterator<char>(f), {});
    std::remove(in.c_str());
    std::remove(out.c_str());
    rmdir(dir);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

struct Rendered {
    std::string header, body;
};

Rendered render(const std::vector<std::string> &networks,
                const std::string &url, const std::string &error,
                const std::string &desc)
{
    std::vector<x402_requirement_t> reqs;
    for (const std::string &name : networks) {
        const x402_network_t *n = x402_network_find(s(name));
        EXPECT_NE(n, nullptr) << name;
        x402_requirement_t r{};
        r.scheme = x402_str_t{"exact", 5};
        r.network = n;
        r.amount = x402_str_t{"1500", 4};
        r.asset = x402_str_t{n->usdc, 42};
        r.pay_to = x402_str_t{"0x209693bc6afc0c5328ba36faf03c514ef312287c", 42};
        r.asset_name = x402_str_t{n->usdc_name, std::strlen(n->usdc_name)};
        r.asset_version = x402_str_t{n->usdc_version, 1};
        r.asset_decimals = 6;
        r.max_timeout = 120;
        r.description = s(desc);
        r.mime_type = x402_str_t{"text/csv", 8};
        reqs.push_back(r);
    }
    const char *err = nullptr;
    x402_offer_t *o = x402_offer_create(reqs.data(), reqs.size(), &err);
    EXPECT_NE(o, nullptr) << err;
    std::vector<std::string> blocks;
    x402_allocator_t a{heap, &blocks};
    x402_str_t h{}, b{};
    EXPECT_EQ(x402_offer_render(o, s(url), s(error), &a, &h, &b), 0);
    x402_offer_free(o);
    return Rendered{std::string(h.data, h.len), std::string(b.data, b.len)};
}

TEST(OfficialParsers, AcceptOurDefault402)
{
    if (!have_node()) {
        GTEST_SKIP() << "node or js/node_modules missing (npm ci in js/)";
    }
    Rendered r = render({"base-sepolia"},
                        "http://localhost:8080/reports/q3.csv?x=1&y=2", "",
                        "");
    std::string out;
    EXPECT_EQ(check(r.header, r.body, out), 0) << out;
}

TEST(OfficialParsers, AcceptHostileStringsAndSeveralNetworks)
{
    if (!have_node()) {
        GTEST_SKIP() << "node or js/node_modules missing (npm ci in js/)";
    }
    Rendered r = render({"base", "polygon", "eip155:42161", "ethereum"},
                        "https://ex.com/caf\xc3\xa9/</script>?q=\"a\\b\"&z=%00",
                        "invalid_exact_evm_payload_signature",
                        "Q3 \"report\" <b>&</b> \xe2\x82\xac\n");
    std::string out;
    EXPECT_EQ(check(r.header, r.body, out), 0) << out;
}

TEST(OfficialParsers, CanFail)
{
    if (!have_node()) {
        GTEST_SKIP() << "node or js/node_modules missing (npm ci in js/)";
    }
    Rendered r = render({"base-sepolia"}, "not a url", "", "");
    std::string out;
    EXPECT_EQ(check(r.header, r.body, out), 1);
    EXPECT_NE(out.find("resource"), std::string::npos) << out;
    std::string json = *x402::base64_decode(r.header);
    json.replace(json.find("\"accepts\""), 9, "\"acceptz\"");
    EXPECT_EQ(check(x402::base64_encode(json), r.body, out), 1);
    EXPECT_NE(out.find("accepts"), std::string::npos) << out;
}

}  // namespace
