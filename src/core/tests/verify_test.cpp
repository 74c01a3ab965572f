#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "base64.hpp"
#include "eip712.hpp"
#include "hex.hpp"
#include "payment.hpp"
#include "vectors_util.hpp"

namespace {

using namespace x402test;

struct Verify : ::testing::Test {
    OfferPtr offer = make_offer();

    PaymentPtr decode(const Vector &t, x402_verdict_t *v)
    {
        return PaymentPtr(x402_payment_decode(s(t.header), t.version_hint, v));
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
};

TEST_F(Verify, GeneratedVectors)
{
    ASSERT_NE(offer, nullptr);
    size_t checked = 0;
    for (const Vector &t : data().vectors) {
        if (!t.decode) {
            continue;
        }
        x402_verdict_t v;
        auto p = decode(t, &v);
        ASSERT_NE(p, nullptr) << t.name;
        int rc = x402_payment_verify(p.get(), offer.get(), data().now, &v);
        EXPECT_EQ(v.ok, t.ok ? 1 : 0) << t.name << ": " << (v.message ? v.message : "");
        EXPECT_EQ(rc, t.ok ? 0 : -1) << t.name;
        EXPECT_EQ(v.signature_unchecked, t.signature_unchecked ? 1 : 0) << t.name;
        EXPECT_EQ(v.version, t.version_hint) << t.name;
        if (t.ok) {
            EXPECT_EQ(v.reason, nullptr) << t.name << ": " << v.reason;
            EXPECT_EQ(long(v.requirement), t.requirement) << t.name;
            EXPECT_EQ(to_string(v.payer), t.payer) << t.name;
            EXPECT_EQ(std::string(v.payment_id), t.payment_id) << t.name;
            const Requirement &q = data().offer[size_t(t.requirement)];
            EXPECT_EQ(to_string(v.network), q.network) << t.name;
            EXPECT_EQ(to_string(v.asset), q.asset) << t.name;
            EXPECT_EQ(to_string(v.pay_to), q.pay_to) << t.name;
            EXPECT_EQ(to_string(v.value).empty(), false) << t.name;
        } else {
            ASSERT_NE(v.reason, nullptr) << t.name;
            EXPECT_EQ(std::string(v.reason), t.reason)
                << t.name << ": " << (v.message ? v.message : "");
            EXPECT_NE(v.message, nullptr) << t.name;
        }
        checked++;
    }
    EXPECT_GT(checked, 40u);
}

TEST_F(Verify, DigestsMatchViem)
{
    // Our EIP-712 digest of every vector whose digest the generator
    // recorded (viem hashTypedData) is the same.
    size_t n = 0;
    for (const Vector &t : data().vectors) {
        if (t.digest.empty()) {
            continue;
        }
        x402_verdict_t v;
        auto p = decode(t, &v);
        ASSERT_NE(p, nullptr) << t.name;
        const Requirement &q = data().offer[size_t(t.requirement)];
        x402::Hash32 dom = x402::domain_separator(
            q.name, q.version, q.chain_id, *x402::address_from_hex(q.asset));
        x402::Hash32 d = x402::typed_data_digest(dom, x402::struct_hash(p->auth));
        EXPECT_EQ("0x" + x402::hex_encode(d), t.digest) << t.name;
        n++;
    }
    EXPECT_GE(n, 3u);
}

TEST_F(Verify, NotesVectorByteForByte)
{
    // The fixed vector of js/vectors/gen-vectors.mjs (n91auth), as viem
    // signs it.
    const Data &d = data();
    EXPECT_EQ(d.n91_domain, "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818");
    EXPECT_EQ(d.n91_struct, "0xb828d78f2357df4b73243a507c1ff21ab4d8604cbad74c67f299e5c0409ea50e");
    EXPECT_EQ(d.n91_digest, "0x01c660eaddb82ae265e0d01c2d81ac5be8ccb1dbcf23cf69e9efdc0359b26b68");
    EXPECT_EQ(d.n91_signature,
              "0xe8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b1"
              "40f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c");

    x402_verdict_t v;
    auto p = decode(vec("notes91_v2"), &v);
    ASSERT_NE(p, nullptr);
    x402::Hash32 dom = x402::domain_separator(
        "USDC", "2", 84532,
        *x402::address_from_hex("0x036CbD53842c5426634e7929541eC2318f3dCF7e"));
    x402::Hash32 sh = x402::struct_hash(p->auth);
    EXPECT_EQ("0x" + x402::hex_encode(dom), d.n91_domain);
    EXPECT_EQ("0x" + x402::hex_encode(sh), d.n91_struct);
    EXPECT_EQ("0x" + x402::hex_encode(x402::typed_data_digest(dom, sh)), d.n91_digest);
    EXPECT_EQ("0x" + x402::hex_encode(p->signature), d.n91_signature);
    ASSERT_EQ(x402_payment_verify(p.get(), offer.get(), d.now, &v), 0);
    EXPECT_EQ(to_string(v.payer), d.n91_signer);
}

TEST_F(Verify, ClockBoundaries)
{
    // notes91: validAfter 1700000000, validBefore 1900000000.
    x402_verdict_t v;
    auto p = decode(vec("notes91_v2"), &v);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(x402_payment_verify(p.get(), offer.get(), 1700000000, &v), 0);
    EXPECT_EQ(x402_payment_verify(p.get(), offer.get(), 1699999999, &v), -1);
    EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_authorization_valid_after");
    EXPECT_EQ(x402_payment_verify(p.get(), offer.get(), 1900000000 - 6, &v), 0);
    EXPECT_EQ(x402_payment_verify(p.get(), offer.get(), 1900000000 - 5, &v), -1);
    EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_authorization_valid_before");
    EXPECT_EQ(x402_payment_verify(p.get(), offer.get(), INT64_MAX, &v), -1);
    EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_authorization_valid_before");
    EXPECT_EQ(x402_payment_verify(p.get(), offer.get(), -1, &v), -1);
    EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_authorization_valid_after");
}

TEST_F(Verify, RepeatableAndVerdictOutlivesNothing)
{
    x402_verdict_t v1, v2;
    auto p = decode(vec("v2_official_client_key1_req1"), &v1);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(x402_payment_verify(p.get(), offer.get(), data().now, &v1), 0);
    ASSERT_EQ(x402_payment_verify(p.get(), offer.get(), data().now, &v2), 0);
    EXPECT_EQ(to_string(v1.payer), to_string(v2.payer));
    EXPECT_STREQ(v1.payment_id, v2.payment_id);
    EXPECT_EQ(v1.requirement, 1u);
    EXPECT_EQ(std::strlen(v1.payment_id), 64u);
}

TEST_F(Verify, NoOfferOrNoPayment)
{
    x402_verdict_t v;
    auto p = decode(vec("notes91_v2"), &v);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(x402_payment_verify(p.get(), nullptr, data().now, &v), -1);
    EXPECT_EQ(v.ok, 0);
    EXPECT_STREQ(v.reason, "invalid_payment_requirements");
    EXPECT_EQ(x402_payment_verify(nullptr, offer.get(), data().now, &v), -1);
    EXPECT_STREQ(v.reason, "invalid_payload");
}

TEST_F(Verify, OnlyRequirementOnOtherNetwork)
{
    // An offer with Base only: a Base Sepolia payment is invalid_network.
    const Requirement &q = data().offer[1];
    x402_requirement_t r{};
    r.scheme = s(q.scheme);
    r.network = x402_network_find(s(q.network));
    r.amount = s(q.amount);
    r.asset = s(q.asset);
    r.pay_to = s(q.pay_to);
    r.asset_name = s(q.name);
    r.asset_version = s(q.version);
    r.asset_decimals = 6;
    r.max_timeout = q.max_timeout;
    const char *err = nullptr;
    OfferPtr base(x402_offer_create(&r, 1, &err));
    ASSERT_NE(base, nullptr) << err;
    x402_verdict_t v;
    auto p = decode(vec("notes91_v1"), &v);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(x402_payment_verify(p.get(), base.get(), data().now, &v), -1);
    EXPECT_STREQ(v.reason, "invalid_network");
}

TEST_F(Verify, DomainCacheNeverConfusesDomains)
{
    // More distinct domains than cache slots, visited repeatedly: only the
    // domain the payment was signed under (USDC, "2") ever verifies.
    const Requirement &q = data().offer[0];
    const char *names[] = {"USDC", "USD Coin", "USDC ", "usdc", "USDC", "X"};
    const char *versions[] = {"2", "2", "2", "2", "1", "2"};
    std::vector<OfferPtr> offers;
    for (int i = 0; i < 6; i++) {
        x402_requirement_t r{};
        r.scheme = s(q.scheme);
        r.network = x402_network_find(s(q.network));
        r.amount = s(q.amount);
        r.asset = s(q.asset);
        r.pay_to = s(q.pay_to);
        r.asset_name = {names[i], std::strlen(names[i])};
        r.asset_version = {versions[i], std::strlen(versions[i])};
        r.asset_decimals = 6;
        r.max_timeout = q.max_timeout;
        const char *err = nullptr;
        offers.emplace_back(x402_offer_create(&r, 1, &err));
        ASSERT_NE(offers.back(), nullptr) << err;
    }
    // The v1 payment names no domain, so the offer's domain decides.
    x402_verdict_t v;
    auto p = decode(vec("notes91_v1"), &v);
    ASSERT_NE(p, nullptr);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 6; i++) {
            int rc = x402_payment_verify(p.get(), offers[i].get(), data().now, &v);
            if (i == 0) {
                EXPECT_EQ(rc, 0) << round << " " << i;
            } else {
                EXPECT_EQ(rc, -1) << round << " " << i;
                EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_signature");
            }
        }
    }
}

TEST_F(Verify, EveryFailureNamesAReason)
{
    // A single flipped bit anywhere in a valid payload must never yield
    // ok, except inside the resource object, which nothing verifies.
    const Vector &t = vec("notes91_v2");
    std::string json = x402::base64_decode(t.header).value();
    size_t oks = 0;
    for (size_t i = 0; i < json.size(); i++) {
        std::string j = json;
        j[i] = static_cast<char>(j[i] ^ 0x01);
        x402_verdict_t v;
        PaymentPtr p(x402_payment_decode(s(x402::base64_encode(j)), 2, &v));
        if (p == nullptr) {
            EXPECT_NE(v.reason, nullptr);
            continue;
        }
        if (x402_payment_verify(p.get(), offer.get(), data().now, &v) == 0) {
            oks++;
            size_t res = json.find("\"resource\"");
            size_t acc = json.find("\"accepted\"");
            bool neutral = i > res && i < acc;
            EXPECT_TRUE(neutral) << "flip at " << i << ": " << j.substr(i, 20);
        } else {
            EXPECT_NE(v.reason, nullptr);
        }
    }
    EXPECT_GT(oks, 0u);
}

}  // namespace
