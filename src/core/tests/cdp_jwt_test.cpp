// CDP facilitator JWTs (issue 12 item 4): key loading, the exact header and
// claims, signatures checked here with OpenSSL's verify and, in
// IndependentJose, with jose from npm (js/jwt-check), which also compares
// the shape with the official @coinbase/cdp-sdk generateJwt.
#include <gtest/gtest.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base64.hpp"
#include "cdp_jwt.hpp"
#include "json_writer.hpp"
#include "x402/x402.h"

namespace {

const std::string data_dir = std::string(X402_TEST_DATA_DIR) + "/cdp/";
const std::string repo = std::string(X402_TEST_DATA_DIR) + "/../../../..";

std::string slurp(const std::string &name)
{
    std::ifstream f(data_dir + name);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

std::string b64url_decode(std::string in)
{
    for (char &c : in) {
        c = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    auto d = x402::base64_decode(in);
    return d ? *d : std::string("<bad base64url>");
}

struct Jwt {
    std::string header_b64, payload_b64, sig_b64;
    std::string header, payload, sig;
};

Jwt split(const std::string &t)
{
    Jwt j;
    size_t a = t.find('.'), b = t.find('.', a + 1);
    j.header_b64 = t.substr(0, a);
    j.payload_b64 = t.substr(a + 1, b - a - 1);
    j.sig_b64 = t.substr(b + 1);
    j.header = b64url_decode(j.header_b64);
    j.payload = b64url_decode(j.payload_b64);
    j.sig = b64url_decode(j.sig_b64);
    return j;
}

struct JsonDel {
    void operator()(json_t *j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonDel>;

Json parse(const std::string &s)
{
    return Json(json_loadb(s.data(), s.size(), JSON_REJECT_DUPLICATES, nullptr));
}

std::string str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "<missing>";
}

// Verifies with OpenSSL: ES256's r || s is turned back into DER here, on
// the test's side, independently of the signer's conversion.
bool openssl_verify(const x402::CdpKey &k, const Jwt &j)
{
    std::string input = j.header_b64 + "." + j.payload_b64;
    std::string sig = j.sig;
    std::vector<unsigned char> der;
    if (k.alg == x402::CdpAlg::es256) {
        if (sig.size() != 64) {
            return false;
        }
        ECDSA_SIG *es = ECDSA_SIG_new();
        auto *p = reinterpret_cast<const unsigned char *>(sig.data());
        ECDSA_SIG_set0(es, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
        unsigned char *out = nullptr;
        int n = i2d_ECDSA_SIG(es, &out);
        der.assign(out, out + n);
        OPENSSL_free(out);
        ECDSA_SIG_free(es);
    } else {
        der.assign(sig.begin(), sig.end());
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = k.alg == x402::CdpAlg::es256 ? EVP_sha256() : nullptr;
    bool ok = EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, k.pkey.get()) == 1
              && EVP_DigestVerify(ctx, der.data(), der.size(),
                                  reinterpret_cast<const unsigned char *>(input.data()),
                                  input.size())
                     == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

x402::CdpKey load(const std::string &file, const std::string &kid = "kid-1")
{
    const char *err = nullptr;
    auto k = x402::cdp_key_load(kid, slurp(file), &err);
    EXPECT_TRUE(k) << file << ": " << (err ? err : "");
    return k ? std::move(*k) : x402::CdpKey{};
}

std::string refusal(const std::string &kid, const std::string &secret)
{
    const char *err = nullptr;
    auto k = x402::cdp_key_load(kid, secret, &err);
    EXPECT_FALSE(k);
    EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL error queue left dirty";
    return err ? err : "";
}

constexpr int64_t now = 1767225600;  // 2026-01-01T00:00:00Z
const std::string verify_path = "/platform/v2/x402/verify";
const std::string cdp_host = "api.cdp.coinbase.com";
// A CDP key id shape (organizations/<uuid>/apiKeys/<uuid>).
const std::string kid =
    "organizations/1f1e8e0a-8c51-4b1e-9d7c-0e9b1d2c3f4a/apiKeys/"
    "6b7c1a2e-5d4f-4e3a-8b9c-0a1b2c3d4e5f";

}  // namespace

TEST(CdpKey, LoadsTheFormatsCdpHandsOut)
{
    EXPECT_EQ(load("es256-sec1.pem").alg, x402::CdpAlg::es256);
    EXPECT_EQ(load("es256-pkcs8.pem").alg, x402::CdpAlg::es256);
    EXPECT_EQ(load("ed25519.b64").alg, x402::CdpAlg::eddsa);
    // Surrounding whitespace of a key file is not part of the key.
    const char *err = nullptr;
    EXPECT_TRUE(x402::cdp_key_load("k", "\n  " + slurp("ed25519.b64") + "\n\n", &err));
}

TEST(CdpKey, RefusesOtherKeysNamingTheRule)
{
    EXPECT_NE(refusal("k", slurp("p384.pem")).find("P-256"), std::string::npos);
    EXPECT_NE(refusal("k", slurp("rsa.pem")).find("P-256"), std::string::npos);
    // Encrypted: refused, and OpenSSL does not prompt for a passphrase.
    EXPECT_NE(refusal("k", slurp("encrypted.pem")).find("unencrypted"),
              std::string::npos);
    EXPECT_NE(refusal("k", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
                  .find("PEM"),
              std::string::npos);
    EXPECT_NE(refusal("k", "not a key").find("64 bytes"), std::string::npos);
    // 32 bytes (a bare seed) is not CDP's format.
    EXPECT_NE(refusal("k", x402::base64_encode(std::string(32, 'a'))).find("64 bytes"),
              std::string::npos);
    EXPECT_NE(refusal("k", "").find("1 to 8192"), std::string::npos);
    EXPECT_NE(refusal("k", std::string(9000, 'A')).find("1 to 8192"), std::string::npos);
    // The public half must be the seed's public key.
    std::string raw = *x402::base64_decode(
        std::string_view(slurp("ed25519.b64")).substr(0, 88));
    raw[40] ^= 1;
    EXPECT_NE(refusal("k", x402::base64_encode(raw)).find("public key"), std::string::npos);
    // Key ids.
    EXPECT_NE(refusal("", slurp("ed25519.b64")).find("key id"), std::string::npos);
    EXPECT_NE(refusal("a b", slurp("ed25519.b64")).find("key id"), std::string::npos);
    EXPECT_NE(refusal(std::string(257, 'k'), slurp("ed25519.b64")).find("key id"),
              std::string::npos);
}

TEST(CdpJwt, HeaderAndClaimsAsTheSdks)
{
    for (const char *file : {"es256-sec1.pem", "es256-pkcs8.pem", "ed25519.b64"}) {
        SCOPED_TRACE(file);
        x402::CdpKey k = load(file, kid);
        const char *err = nullptr;
        auto t = x402::cdp_jwt(k, "POST", cdp_host, verify_path, now, 0, &err);
        ASSERT_TRUE(t) << err;
        // Compact JWS: three base64url parts without padding.
        EXPECT_EQ(t->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789-_."),
                  std::string::npos);
        Jwt j = split(*t);
        Json h = parse(j.header), p = parse(j.payload);
        ASSERT_TRUE(h && p) << j.header << j.payload;

        bool es = k.alg == x402::CdpAlg::es256;
        EXPECT_EQ(json_object_size(h.get()), 4u) << j.header;
        EXPECT_EQ(str(h.get(), "alg"), es ? "ES256" : "EdDSA");
        EXPECT_EQ(str(h.get(), "kid"), kid);
        EXPECT_EQ(str(h.get(), "typ"), "JWT");
        std::string nonce = str(h.get(), "nonce");
        EXPECT_EQ(nonce.size(), 32u);
        EXPECT_EQ(nonce.find_first_not_of("0123456789abcdef"), std::string::npos);

        EXPECT_EQ(json_object_size(p.get()), 7u) << j.payload;
        EXPECT_EQ(str(p.get(), "sub"), kid);
        EXPECT_EQ(str(p.get(), "iss"), "cdp");
        json_t *aud = json_object_get(p.get(), "aud");
        ASSERT_TRUE(json_is_array(aud));
        ASSERT_EQ(json_array_size(aud), 1u);
        EXPECT_STREQ(json_string_value(json_array_get(aud, 0)), "cdp_service");
        EXPECT_EQ(json_integer_value(json_object_get(p.get(), "nbf")), now);
        EXPECT_EQ(json_integer_value(json_object_get(p.get(), "iat")), now);
        EXPECT_EQ(json_integer_value(json_object_get(p.get(), "exp")), now + 120);
        json_t *uris = json_object_get(p.get(), "uris");
        ASSERT_TRUE(json_is_array(uris));
        ASSERT_EQ(json_array_size(uris), 1u);
        EXPECT_STREQ(json_string_value(json_array_get(uris, 0)),
                     "POST api.cdp.coinbase.com/platform/v2/x402/verify");

        // JOSE signature form: 64 bytes for both algorithms (r || s for
        // ES256, not DER), and it verifies.
        EXPECT_EQ(j.sig.size(), 64u);
        EXPECT_TRUE(openssl_verify(k, j));
        // A changed claim does not.
        Jwt bad = j;
        bad.payload_b64 = x402::base64url_encode(
            std::string(j.payload).replace(j.payload.find("verify"), 6, "settle"));
        EXPECT_FALSE(openssl_verify(k, bad));
        ERR_clear_error();
    }
}

TEST(CdpJwt, FreshNoncePerToken)
{
    x402::CdpKey k = load("ed25519.b64");
    const char *err = nullptr;
    auto a = x402::cdp_jwt(k, "GET", cdp_host, "/platform/v2/x402/supported", now, 0, &err);
    auto b = x402::cdp_jwt(k, "GET", cdp_host, "/platform/v2/x402/supported", now, 0, &err);
    ASSERT_TRUE(a && b);
    EXPECT_NE(str(parse(split(*a).header).get(), "nonce"),
              str(parse(split(*b).header).get(), "nonce"));
    // Ed25519 is deterministic: the nonce is what makes tokens differ.
    EXPECT_NE(*a, *b);
}

TEST(CdpJwt, UriCarriesPortAndLifetime)
{
    x402::CdpKey k = load("es256-pkcs8.pem");
    const char *err = nullptr;
    auto t = x402::cdp_jwt(k, "GET", "127.0.0.1:8402", "/facilitator/supported", now, 60, &err);
    ASSERT_TRUE(t) << err;
    Json p = parse(split(*t).payload);
    EXPECT_STREQ(json_string_value(json_array_get(json_object_get(p.get(), "uris"), 0)),
                 "GET 127.0.0.1:8402/facilitator/supported");
    EXPECT_EQ(json_integer_value(json_object_get(p.get(), "exp")), now + 60);
}

TEST(CdpJwt, RefusesBadArguments)
{
    x402::CdpKey k = load("ed25519.b64");
    auto refused = [&](std::string_view m, std::string_view h, std::string_view p,
                       int64_t t, int64_t life) {
        const char *err = nullptr;
        auto r = x402::cdp_jwt(k, m, h, p, t, life, &err);
        EXPECT_FALSE(r);
        return std::string(err ? err : "");
    };
    EXPECT_NE(refused("post", cdp_host, verify_path, now, 0).find("method"), std::string::npos);
    EXPECT_NE(refused("", cdp_host, verify_path, now, 0).find("method"), std::string::npos);
    EXPECT_NE(refused("POST", "https://api.cdp.coinbase.com", verify_path, now, 0).find("host"),
              std::string::npos);
    EXPECT_NE(refused("POST", "", verify_path, now, 0).find("host"), std::string::npos);
    EXPECT_NE(refused("POST", cdp_host, "verify", now, 0).find("path"), std::string::npos);
    EXPECT_NE(refused("POST", cdp_host, "/a b", now, 0).find("path"), std::string::npos);
    EXPECT_NE(refused("POST", cdp_host, verify_path, -1, 0).find("unix time"), std::string::npos);
    EXPECT_NE(refused("POST", cdp_host, verify_path, now, 3601).find("lifetime"),
              std::string::npos);
    EXPECT_NE(refused("POST", cdp_host, verify_path, now, -5).find("lifetime"),
              std::string::npos);
}

namespace {

struct Blocks {
    std::vector<std::string> b;
    bool fail = false;
    static void *alloc(void *ctx, size_t n)
    {
        auto *self = static_cast<Blocks *>(ctx);
        if (self->fail) {
            return nullptr;
        }
        self->b.emplace_back(n, '\0');
        return self->b.back().data();
    }
};

}  // namespace

TEST(CdpJwtCApi, AuthorizationHeader)
{
    std::string secret = slurp("es256-sec1.pem");
    const char *err = nullptr;
    x402_cdp_key_t *k = x402_cdp_key_load(s(kid), s(secret), &err);
    ASSERT_NE(k, nullptr) << err;
    EXPECT_STREQ(x402_cdp_key_alg(k), "ES256");
    Blocks blocks;
    x402_allocator_t a{&Blocks::alloc, &blocks};
    x402_str_t out{};
    std::string m = "POST", h = cdp_host;
    ASSERT_EQ(x402_cdp_authorization(k, s(m), s(h), s(verify_path), now, 0, &a, &out, &err), 0)
        << err;
    std::string v(out.data, out.len);
    EXPECT_EQ(v.rfind("Bearer ey", 0), 0u) << v;
    EXPECT_EQ(std::count(v.begin(), v.end(), '.'), 2);

    blocks.fail = true;
    err = nullptr;
    EXPECT_EQ(x402_cdp_authorization(k, s(m), s(h), s(verify_path), now, 0, &a, &out, &err), -1);
    EXPECT_STREQ(err, "out of memory");
    x402_cdp_key_free(k);

    std::string bad = slurp("p384.pem");
    err = nullptr;
    EXPECT_EQ(x402_cdp_key_load(s(kid), s(bad), &err), nullptr);
    ASSERT_NE(err, nullptr);
    EXPECT_NE(std::string(err).find("P-256"), std::string::npos);
}

namespace {

bool have_jose()
{
    struct stat st;
    return stat((repo + "/js/jwt-check/node_modules/jose").c_str(), &st) == 0
           && stat((repo + "/js/node_modules/@coinbase/cdp-sdk").c_str(), &st) == 0
           && std::system("node --version > /dev/null 2>&1") == 0;
}

}  // namespace

// jose (npm) verifies what we sign, and refuses expired, not-yet-valid,
// tampered, foreign-key and wrong-URI tokens, as a fake CDP facilitator
// built on js/jwt-check/cdp-jwt.mjs would.
TEST(CdpJwt, IndependentJose)
{
    if (!have_jose()) {
        GTEST_SKIP() << "node, js/jwt-check/node_modules (npm ci in js/jwt-check) "
                        "or js/node_modules missing";
    }
    std::string cases = "[";
    bool first = true;
    auto add = [&](const std::string &token, const std::string &secret, const std::string &keyid,
                   const std::string &path, int64_t at, const std::string &expect,
                   bool official = false) {
        if (!first) {
            cases += ',';
        }
        first = false;
        cases += '{';
        x402::json_append_member(cases, "token", token, true);
        x402::json_append_member(cases, "secret", secret);
        x402::json_append_member(cases, "keyId", keyid);
        x402::json_append_member(cases, "method", "POST");
        x402::json_append_member(cases, "host", cdp_host);
        x402::json_append_member(cases, "path", path);
        x402::json_append_member(cases, "expect", expect);
        cases += ",\"now\":";
        x402::json_append_uint(cases, uint64_t(at));
        cases += official ? ",\"compareOfficial\":true}" : "}";
    };
    int64_t t0 = int64_t(time(nullptr));
    for (const char *file : {"es256-sec1.pem", "es256-pkcs8.pem", "ed25519.b64"}) {
        std::string secret = slurp(file);
        x402::CdpKey k = load(file, kid);
        const char *err = nullptr;
        std::string tok = *x402::cdp_jwt(k, "POST", cdp_host, verify_path, t0, 0, &err);
        // The SDK's jose import refuses SEC1 keys: compare with it on the
        // other two.
        add(tok, secret, kid, verify_path, t0 + 1, "ok",
            std::string(file) != "es256-sec1.pem");
        add(tok, secret, kid, verify_path, t0 + 119, "ok");
        add(tok, secret, kid, verify_path, t0 + 121, "\"exp\" claim timestamp check failed");
        add(tok, secret, kid, verify_path, t0 - 5, "\"nbf\" claim timestamp check failed");
        add(tok, secret, kid, "/platform/v2/x402/settle", t0, "uris");
        add(tok, secret, "another-key", verify_path, t0, "unexpected \"sub\" claim value");
        Jwt j = split(tok);
        std::string forged = x402::base64url_encode(std::string(j.payload).replace(
        j.payload.find("\"sub\":\""), 7, "\"sub\":\"x"));
        add(j.header_b64 + "." + forged + "." + j.sig_b64, secret, "x" + kid, verify_path, t0,
            "signature verification failed");
    }
    // A token signed by one key does not verify with another.
    {
        x402::CdpKey k = load("es256-sec1.pem", kid);
        const char *err = nullptr;
        std::string tok = *x402::cdp_jwt(k, "POST", cdp_host, verify_path, t0, 0, &err);
        add(tok, slurp("es256-pkcs8.pem"), kid, verify_path, t0, "signature verification failed");
    }
    cases += ']';

    char dir[] = "/tmp/x402-jwt-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    std::string in = std::string(dir) + "/cases.json", out = std::string(dir) + "/out.txt",
                err = std::string(dir) + "/err.txt";
    std::ofstream(in) << cases;
    // stderr apart: Node 18 warns that Ed25519 in Web Crypto is experimental
    std::string cmd = "cd " + repo + "/js/jwt-check && node cdp-jwt.mjs < " + in + " > " + out
                      + " 2> " + err;
    int rc = std::system(cmd.c_str());
    std::ifstream f(out), fe(err);
    std::stringstream ss, se;
    ss << f.rdbuf();
    se << fe.rdbuf();
    std::string text = ss.str();
    EXPECT_EQ(rc, 0) << text << se.str();
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 22) << text << se.str();
    unlink(in.c_str());
    unlink(out.c_str());
    unlink(err.c_str());
    rmdir(dir);
}

// The stand-in for CDP's authentication the glue's test will use
// (js/jwt-check/cdp-gate.mjs) lets through the official SDK's tokens and
// ours for /verify, /settle and /supported, and refuses bad ones.
TEST(CdpJwt, GateTakesOurTokens)
{
    if (!have_jose()) {
        GTEST_SKIP() << "node, js/jwt-check/node_modules or js/node_modules missing";
    }
    std::string secret = slurp("ed25519.b64");
    const char *err = nullptr;
    x402_cdp_key_t *k = x402_cdp_key_load(x402_str_t{"organizations/test/apiKeys/gate", 31},
                                          s(secret), &err);
    ASSERT_NE(k, nullptr) << err;
    Blocks blocks;
    x402_allocator_t a{&Blocks::alloc, &blocks};
    std::string list = "[";
    for (const char *op : {"POST verify", "POST settle", "GET supported"}) {
        std::string m(op, std::strchr(op, ' ') - op);
        std::string path = "/platform/v2/x402/" + std::string(std::strchr(op, ' ') + 1);
        x402_str_t out{};
        ASSERT_EQ(x402_cdp_authorization(k, s(m), s(cdp_host), s(path), int64_t(time(nullptr)), 0,
                                         &a, &out, &err),
                  0)
            << err;
        list += std::string(list.size() > 1 ? "," : "") + "{";
        x402::json_append_member(list, "method", m, true);
        x402::json_append_member(list, "path", path);
        x402::json_append_member(list, "authorization", std::string(out.data, out.len));
        list += "}";
    }
    list += "]";
    x402_cdp_key_free(k);
    std::string in = "/tmp/x402-gate-" + std::to_string(getpid()) + ".json";
    std::string out = in + ".out";
    std::ofstream(in) << list;
    std::string cmd = "node " + repo + "/js/jwt-check/cdp-gate.mjs selfcheck --core-tokens " + in
                      + " > " + out + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::string text = [&] {
        std::ifstream f(out);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }();
    EXPECT_EQ(rc, 0) << text;
    EXPECT_NE(text.find("1..10"), std::string::npos) << text;
    unlink(in.c_str());
    unlink(out.c_str());
}
