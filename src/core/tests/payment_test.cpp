#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "base64.hpp"
#include "payment.hpp"
#include "vectors_util.hpp"

namespace {

using namespace x402test;

// The fixed vector of js/vectors/gen-vectors.mjs (n91auth), verbatim.
const char *notes_v2_json =
    R"({"x402Version":2,"payload":{"authorization":{"from":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"1700000000","validBefore":"1900000000","nonce":"0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0"},"signature":"0xe8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b140f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c"},"resource":{"url":"http://localhost:4021/protected","description":"","mimeType":""},"accepted":{"scheme":"exact","network":"eip155:84532","amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300,"extra":{"name":"USDC","version":"2"}}})";
const char *notes_v1_json =
    R"({"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":{"signature":"0xe8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b140f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c","authorization":{"from":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1000","validAfter":"1700000000","validBefore":"1900000000","nonce":"0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0"}}})";

PaymentPtr decode(const std::string &h, int hint, x402_verdict_t *v)
{
    return PaymentPtr(x402_payment_decode(s(h), hint, v));
}

const Vector &vec(const std::string &name)
{
    for (const Vector &v : data().vectors) {
        if (v.name == name) {
            return v;
        }
    }
    ADD_FAILURE() << "no vector " << name;
    static Vector none;
    return none;
}

TEST(PaymentDecode, GeneratorReproducesNotesHeaders)
{
    // The generator's encoders give the notes' headers byte for byte.
    EXPECT_EQ(vec("notes91_v2").header, x402::base64_encode(notes_v2_json));
    EXPECT_EQ(vec("notes91_v1").header, x402::base64_encode(notes_v1_json));
    EXPECT_EQ(vec("notes91_v2").header.size(), 1020u);
    EXPECT_EQ(vec("notes91_v1").header.size(), 644u);
}

TEST(PaymentDecode, NotesV2Fields)
{
    x402_verdict_t v;
    auto p = decode(x402::base64_encode(notes_v2_json), 2, &v);
    ASSERT_NE(p, nullptr) << (v.message ? v.message : "");
    EXPECT_EQ(p->version, 2);
    EXPECT_EQ(p->json, notes_v2_json);  // bytes kept verbatim
    EXPECT_EQ(v.version, 2);
    EXPECT_EQ(v.reason, nullptr);
    EXPECT_EQ(to_string(v.scheme), "exact");
    EXPECT_EQ(to_string(v.network), "eip155:84532");
    EXPECT_EQ(to_string(v.payer), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    EXPECT_EQ(v.pay_to.len, 0u);  // checksummed once matched
    EXPECT_EQ(to_string(v.value), "1000");
    EXPECT_EQ(to_string(v.nonce),
              "0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0");
    EXPECT_EQ(v.valid_after, 1700000000u);
    EXPECT_EQ(v.valid_before, 1900000000u);
    EXPECT_EQ(p->amount, "1000");
    EXPECT_EQ(p->max_timeout, 300u);
    EXPECT_EQ(p->extra_name, "USDC");
    EXPECT_EQ(p->signature.size(), 65u);
}

TEST(PaymentDecode, NotesV1Fields)
{
    x402_verdict_t v;
    auto p = decode(x402::base64_encode(notes_v1_json), 1, &v);
    ASSERT_NE(p, nullptr) << (v.message ? v.message : "");
    EXPECT_EQ(p->version, 1);
    EXPECT_EQ(p->json, notes_v1_json);
    EXPECT_EQ(to_string(v.scheme), "exact");
    EXPECT_EQ(to_string(v.network), "base-sepolia");  // CAIP-2 once matched
    EXPECT_EQ(to_string(v.payer), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
}

TEST(PaymentDecode, NonceAndAddressesNormalised)
{
    std::string j = notes_v2_json;
    auto at = j.find("0x4c3559ac");
    for (size_t i = at + 2; i < at + 66; i++) {
        j[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(j[i])));
    }
    at = j.find("0xf39Fd6e5");
    for (size_t i = at + 2; i < at + 42; i++) {
        j[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(j[i])));
    }
    x402_verdict_t v;
    auto p = decode(x402::base64_encode(j), 2, &v);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(to_string(v.nonce),
              "0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0");
    EXPECT_EQ(to_string(v.payer), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
}

TEST(PaymentDecode, GeneratedVectors)
{
    size_t n = 0;
    for (const Vector &t : data().vectors) {
        x402_verdict_t v;
        auto p = decode(t.header, t.version_hint, &v);
        if (t.decode) {
            EXPECT_NE(p, nullptr) << t.name << ": " << (v.message ? v.message : "");
            if (p != nullptr && !t.payer.empty()) {
                EXPECT_EQ(to_string(v.payer), t.payer) << t.name;
            }
        } else {
            EXPECT_EQ(p, nullptr) << t.name;
            ASSERT_NE(v.reason, nullptr) << t.name;
            EXPECT_EQ(std::string(v.reason), t.reason) << t.name;
            EXPECT_NE(v.message, nullptr) << t.name;
            EXPECT_EQ(v.ok, 0) << t.name;
        }
        n++;
    }
    EXPECT_GT(n, 60u);
}

std::string nested(int depth)
{
    // extensions at depth 2; each {"a":...} adds one level.
    std::string inner = "1";
    for (int i = 0; i < depth - 1; i++) {
        inner = "{\"a\":" + inner + "}";
    }
    std::string j = notes_v2_json;
    j.insert(j.size() - 1, ",\"extensions\":" + inner);
    return x402::base64_encode(j);
}

TEST(PaymentDecode, DepthLimitIsExact)
{
    x402_verdict_t v;
    // extensions holds depth-1 objects starting at level 2.
    EXPECT_NE(decode(nested(16), 2, &v), nullptr) << (v.message ? v.message : "");
    EXPECT_EQ(decode(nested(17), 2, &v), nullptr);
    EXPECT_STREQ(v.reason, "invalid_payload");
    EXPECT_EQ(decode(nested(3000), 2, &v), nullptr);
}

TEST(PaymentDecode, SizeCapIsExact)
{
    std::string base = notes_v2_json;
    // Pad with an extension string so the base64 is exactly the cap.
    auto make = [&](size_t b64len) {
        size_t json_len = b64len / 4 * 3;
        std::string j = base;
        std::string ext = ",\"extensions\":{\"p\":\"\"}";
        size_t pad = json_len - j.size() - ext.size();
        ext.insert(ext.size() - 2, std::string(pad, 'x'));
        j.insert(j.size() - 1, ext);
        return x402::base64_encode(j);
    };
    x402_verdict_t v;
    std::string at_cap = make(X402_MAX_HEADER_LEN);
    ASSERT_EQ(at_cap.size(), size_t(X402_MAX_HEADER_LEN));
    EXPECT_NE(decode(at_cap, 2, &v), nullptr) << (v.message ? v.message : "");
    std::string over = make(X402_MAX_HEADER_LEN + 4);
    EXPECT_EQ(decode(over, 2, &v), nullptr);
    EXPECT_STREQ(v.reason, "invalid_payload");
}

TEST(PaymentDecode, NullAndEmpty)
{
    x402_verdict_t v;
    EXPECT_EQ(x402_payment_decode({nullptr, 0}, 2, &v), nullptr);
    EXPECT_STREQ(v.reason, "invalid_payload");
    EXPECT_EQ(x402_payment_decode({nullptr, 5}, 2, &v), nullptr);
    x402_payment_free(nullptr);
}

TEST(PaymentDecode, EmbeddedNulAndNonUtf8Rejected)
{
    x402_verdict_t v;
    std::string j = notes_v2_json;
    std::string with_nul = j;
    with_nul.insert(with_nul.find("http://") + 7, "\\u0000");
    EXPECT_EQ(decode(x402::base64_encode(with_nul), 2, &v), nullptr);
    std::string bad_utf8 = j;
    bad_utf8.insert(bad_utf8.find("http://") + 7, "\xff\xfe");
    EXPECT_EQ(decode(x402::base64_encode(bad_utf8), 2, &v), nullptr);
    EXPECT_STREQ(v.reason, "invalid_payload");
}

TEST(PaymentDecode, SmartWalletSignatureKept)
{
    std::string j = notes_v2_json;
    std::string sig = "0x" + std::string(2 * 200, 'a');
    size_t at = j.find("0xe8edda0f");
    j.replace(at, 132, sig);
    x402_verdict_t v;
    auto p = decode(x402::base64_encode(j), 2, &v);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->signature.size(), 200u);
}

}  // namespace

namespace {

// What jansson's strict mode refused and simdjson's DOM accepts: the
// decoder's own walk refuses it (payment.cpp), at any depth.
void expect_refused(const std::string &json, const char *what)
{
    x402_verdict_t v;
    EXPECT_EQ(decode(x402::base64_encode(json), 2, &v), nullptr) << what;
    EXPECT_STREQ(v.reason, "invalid_payload") << what;
}

void insert_before(std::string &j, const char *anchor, const std::string &text)
{
    size_t at = j.find(anchor);
    ASSERT_NE(at, std::string::npos) << anchor;
    j.insert(at, text);
}

TEST(PaymentDecode, StrictJsonAtEveryDepth)
{
    std::string j = notes_v2_json;
    x402_verdict_t v;
    ASSERT_NE(decode(x402::base64_encode(j), 2, &v), nullptr);

    std::string dup_nested = j;  // a second "value" in the authorization
    insert_before(dup_nested, "\"validAfter\"", "\"value\":\"1\",");
    expect_refused(dup_nested, "duplicate key in payload.authorization");

    std::string dup_ext = j;  // inside an extension nobody reads
    dup_ext.insert(dup_ext.size() - 1, ",\"extensions\":{\"a\":{\"k\":1,\"k\":2}}");
    expect_refused(dup_ext, "duplicate key in an extension");

    std::string many = ",\"extensions\":{";  // the sorted path (> 16 keys)
    for (int i = 0; i < 40; i++) {
        many += "\"k" + std::to_string(i) + "\":0,";
    }
    std::string many_ok = j;
    many_ok.insert(many_ok.size() - 1, many + "\"k40\":0}");
    EXPECT_NE(decode(x402::base64_encode(many_ok), 2, &v), nullptr)
        << (v.message ? v.message : "");
    std::string many_dup = j;
    many_dup.insert(many_dup.size() - 1, many + "\"k7\":0}");
    expect_refused(many_dup, "duplicate among 41 keys");

    std::string nul_key = j;
    nul_key.insert(nul_key.size() - 1, ",\"extensions\":{\"a\\u0000b\":1}");
    expect_refused(nul_key, "NUL in a key");

    std::string big_timeout = j;  // above int64: jansson failed the parse
    size_t at = big_timeout.find("\"maxTimeoutSeconds\":300");
    ASSERT_NE(at, std::string::npos);
    big_timeout.replace(at, 23, "\"maxTimeoutSeconds\":18446744073709551615");
    expect_refused(big_timeout, "maxTimeoutSeconds above 2^63");

    std::string real_version = j;
    real_version.replace(real_version.find("\"x402Version\":2"), 15,
                         "\"x402Version\":2.0");
    x402_verdict_t rv;
    EXPECT_EQ(decode(x402::base64_encode(real_version), 2, &rv), nullptr);
    EXPECT_STREQ(rv.reason, "invalid_x402_version");

    expect_refused("[1,2]", "top-level array");
    expect_refused("\"x\"", "top-level string");
}

}  // namespace
