// Several ways to pay at one location (issue 12 item 1, core half): an offer
// with two assets on one network (USDC and a EURC-like token on Base
// Sepolia), another network (Base) and a chain outside the table with its
// own token. The 402 lists them all (v2 accepts; v1 body only the networks
// the legacy package knows) and the official parsers take it; a payment
// for each option matches exactly that option and is verified under that
// option's EIP-712 domain, in v2 and in v1 (which names no asset, so the
// signature has to tell USDC from EURC); the same (scheme, network, asset)
// twice is refused.
#include <gtest/gtest.h>
#include <jansson.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
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

#include "base64.hpp"
#include "eip712.hpp"
#include "hex.hpp"
#include "json_writer.hpp"
#include "offer.hpp"
#include "payment.hpp"
#include "x402/x402.h"

namespace {

x402_str_t s(const char *p)
{
    return x402_str_t{p, std::strlen(p)};
}

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

const char *pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
// Circle's EURC on Base Sepolia (FiatTokenV2: name "EURC", version "2",
// 6 decimals); not in x402's default-asset tables, so offered explicitly.
const char *eurc = "0x808456652fdb597867f38412077A9182bf77359F";
// A token on a local second chain (chain id 31338), as js/interop deploys.
const char *local_token = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
constexpr int64_t now = 1800000000;
// Chains outside the table are interned in a pool of 64 that other tests
// fill on purpose (networks_test): intern ours before any test runs.
const x402_network_t *const local_chain =
    x402_network_find(x402_str_t{"eip155:31338", 12});

struct Option {
    const char *network, *asset, *name, *version, *amount;
};

const std::vector<Option> options = {
    {"base-sepolia", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2", "10000"},
    {"base-sepolia", eurc, "EURC", "2", "10000"},
    {"base", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2", "10000"},
    {"eip155:31338", local_token, "Test Euro", "1", "20000"},
};

x402_requirement_t requirement(const Option &o)
{
    x402_requirement_t r{};
    r.scheme = s("exact");
    r.network = x402_network_find(s(o.network));
    EXPECT_TRUE(std::strcmp(o.network, "eip155:31338") != 0 || r.network == local_chain);
    r.amount = s(o.amount);
    r.asset = s(o.asset);
    r.pay_to = s(pay_to);
    r.asset_name = s(o.name);
    r.asset_version = s(o.version);
    r.asset_decimals = 6;
    r.max_timeout = 300;
    r.description = s("report");
    r.mime_type = s("application/json");
    return r;
}

struct OfferFree {
    void operator()(x402_offer_t *o) const { x402_offer_free(o); }
};
using Offer = std::unique_ptr<x402_offer_t, OfferFree>;

Offer make_offer(const std::vector<Option> &opts)
{
    std::vector<x402_requirement_t> reqs;
    for (const auto &o : opts) {
        reqs.push_back(requirement(o));
        EXPECT_NE(reqs.back().network, nullptr) << o.network;
    }
    const char *err = nullptr;
    Offer offer(x402_offer_create(reqs.data(), reqs.size(), &err));
    EXPECT_TRUE(offer) << (err ? err : "");
    return offer;
}

// A payer with a fixed key (anvil's account 1).
struct Signer {
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_SIGN);
    uint8_t key[32];
    x402::Address address{};
    Signer()
    {
        x402::hex_to_bytes("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
                           key, 32);
        secp256k1_pubkey pub;
        EXPECT_EQ(secp256k1_ec_pubkey_create(ctx, &pub, key), 1);
        uint8_t ser[65];
        size_t len = sizeof(ser);
        secp256k1_ec_pubkey_serialize(ctx, ser, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
        x402::Hash32 h = x402::keccak256(ser + 1, 64);
        std::memcpy(address.data(), h.data() + 12, 20);
    }
    ~Signer() { secp256k1_context_destroy(ctx); }

    std::string sign(const x402::Hash32 &digest) const
    {
        secp256k1_ecdsa_recoverable_signature sig;
        EXPECT_EQ(secp256k1_ecdsa_sign_recoverable(ctx, &sig, digest.data(), key, nullptr,
                                                   nullptr),
                  1);
        uint8_t out[65];
        int recid = 0;
        secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, out, &recid, &sig);
        out[64] = uint8_t(27 + recid);
        return "0x" + x402::hex_encode(out, 65);
    }
};

const Signer &payer()
{
    static const Signer s;
    return s;
}

// A payment for option `paid`, signed under the EIP-712 domain of option
// `domain_of` (normally the same), as a PAYMENT-SIGNATURE (v2, `accepted`
// = the offer's entry) or X-PAYMENT (v1) header.
std::string payment(const x402_offer_t *offer, size_t paid, const Option &domain_of,
                    int version, uint8_t nonce_byte)
{
    const x402_requirement_t *r = x402_offer_get(offer, paid);
    const x402_network_t *dn = x402_network_find(s(domain_of.network));
    x402::TransferAuthorization a{};
    a.from = payer().address;
    a.to = *x402::address_from_hex(std::string_view(r->pay_to.data, r->pay_to.len));
    a.value = *x402::u256_from_decimal(std::string_view(r->amount.data, r->amount.len));
    a.valid_after = x402::u256_from_u64(now - 60);
    a.valid_before = x402::u256_from_u64(now + 300);
    a.nonce.fill(nonce_byte);
    x402::Hash32 dom = x402::domain_separator(domain_of.name, domain_of.version, dn->chain_id,
                                              *x402::address_from_hex(domain_of.asset));
    std::string sig = payer().sign(x402::typed_data_digest(dom, x402::struct_hash(a)));

    std::string auth = "{";
    x402::json_append_member(auth, "from", "0x" + x402::hex_encode(a.from.data(), 20), true);
    x402::json_append_member(auth, "to", std::string(r->pay_to.data, r->pay_to.len));
    x402::json_append_member(auth, "value", std::string(r->amount.data, r->amount.len));
    x402::json_append_member(auth, "validAfter", std::to_string(now - 60));
    x402::json_append_member(auth, "validBefore", std::to_string(now + 300));
    x402::json_append_member(auth, "nonce", "0x" + x402::hex_encode(a.nonce.data(), 32));
    auth += '}';
    std::string body = "{\"signature\":\"" + sig + "\",\"authorization\":" + auth + "}";

    std::string j;
    if (version == 2) {
        j = "{\"x402Version\":2,\"accepted\":" + std::string(offer->v2_json(paid))
            + ",\"payload\":" + body + "}";
    } else {
        j = "{\"x402Version\":1,\"scheme\":\"exact\",";
        x402::json_append_member(j, "network", r->network->v1_name, true);
        j += ",\"payload\":" + body + "}";
    }
    return x402::base64_encode(j);
}

struct PaymentFree {
    void operator()(x402_payment_t *p) const { x402_payment_free(p); }
};

// The verdict's strings point into the payment: both live together.
struct Checked : x402_verdict_t {
    std::shared_ptr<x402_payment_t> payment;
};

Checked verify(const x402_offer_t *offer, const std::string &header, int version)
{
    Checked c;
    x402_verdict_t &v = c;
    c.payment.reset(x402_payment_decode(s(header), version, &v), PaymentFree());
    EXPECT_TRUE(c.payment) << (v.message ? v.message : "");
    if (c.payment) {
        x402_payment_verify(c.payment.get(), offer, now, &v);
    }
    return c;
}

std::string str(x402_str_t v)
{
    return std::string(v.data ? v.data : "", v.len);
}

}  // namespace

TEST(SeveralOptions, EachOptionPaidAndVerifiedUnderItsOwnDomain)
{
    Offer offer = make_offer(options);
    ASSERT_TRUE(offer);
    for (size_t i = 0; i < options.size(); i++) {
        SCOPED_TRACE(options[i].name);
        Checked v = verify(offer.get(), payment(offer.get(), i, options[i], 2, uint8_t(i + 1)), 2);
        EXPECT_EQ(v.ok, 1) << (v.message ? v.message : "");
        EXPECT_EQ(v.requirement, i);
        EXPECT_EQ(str(v.asset), options[i].asset);
        EXPECT_EQ(str(v.network), x402_network_find(s(options[i].network))->caip2);
        EXPECT_EQ(str(v.value), options[i].amount);
    }
}

TEST(SeveralOptions, V2SignatureUnderAnotherOptionsDomainIsRefused)
{
    Offer offer = make_offer(options);
    // accepted names EURC, the signature is over USDC's domain.
    Checked v = verify(offer.get(), payment(offer.get(), 1, options[0], 2, 9), 2);
    EXPECT_EQ(v.ok, 0);
    ASSERT_NE(v.reason, nullptr);
    EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_signature");
}

// v1 carries no asset: USDC and EURC on Base Sepolia at one price and payTo
// are told apart by the domain the signature recovers under.
TEST(SeveralOptions, V1PaymentFindsItsAssetBySignature)
{
    Offer offer = make_offer(options);
    for (size_t i : {0, 1, 2}) {
        SCOPED_TRACE(options[i].name);
        Checked v = verify(offer.get(), payment(offer.get(), i, options[i], 1, uint8_t(i + 20)), 1);
        EXPECT_EQ(v.ok, 1) << (v.message ? v.message : "");
        EXPECT_EQ(v.requirement, i);
        EXPECT_EQ(str(v.asset), options[i].asset);
        // The payment's identity names the asset actually paid.
        Checked w = verify(offer.get(), payment(offer.get(), i, options[i], 1, uint8_t(i + 20)), 1);
        EXPECT_STREQ(v.payment_id, w.payment_id);
    }
    // Same nonce and payer, other asset: another payment id.
    Checked a = verify(offer.get(), payment(offer.get(), 0, options[0], 1, 42), 1);
    Checked b = verify(offer.get(), payment(offer.get(), 1, options[1], 1, 42), 1);
    EXPECT_STRNE(a.payment_id, b.payment_id);

    // Signed under a domain no option has: refused for the signature.
    Option fake = options[1];
    fake.name = "EURC Fake";
    Checked v = verify(offer.get(), payment(offer.get(), 1, fake, 1, 33), 1);
    EXPECT_EQ(v.ok, 0);
    ASSERT_NE(v.reason, nullptr);
    EXPECT_STREQ(v.reason, "invalid_exact_evm_payload_signature");
}

TEST(SeveralOptions, SameSchemeNetworkAssetTwiceIsRefused)
{
    std::vector<x402_requirement_t> reqs = {requirement(options[0]), requirement(options[1]),
                                            requirement(options[0])};
    reqs[2].amount = s("20000");  // a second price for the same way to pay
    const char *err = nullptr;
    EXPECT_EQ(x402_offer_create(reqs.data(), reqs.size(), &err), nullptr);
    ASSERT_NE(err, nullptr);
    EXPECT_STREQ(err, "an offer lists each scheme, network and asset once");
    // The same asset by v1 name and by CAIP-2 id is the same network.
    reqs[2] = requirement(options[0]);
    reqs[2].network = x402_network_find(s("eip155:84532"));
    EXPECT_EQ(x402_offer_create(reqs.data(), reqs.size(), &err), nullptr);
}

namespace {

const std::string repo = std::string(X402_TEST_DATA_DIR) + "/../../../..";

}  // namespace

TEST(SeveralOptions, The402ListsEveryOptionAndOfficialParsersTakeIt)
{
    Offer offer = make_offer(options);
    std::string header, body;
    offer->render("https://api.example.com/report?q=1", "", header, body);
    auto v2 = x402::base64_decode(header);
    ASSERT_TRUE(v2);
    json_t *j2 = json_loads(v2->c_str(), JSON_REJECT_DUPLICATES, nullptr);
    json_t *j1 = json_loads(body.c_str(), JSON_REJECT_DUPLICATES, nullptr);
    ASSERT_TRUE(j2 && j1);
    json_t *acc2 = json_object_get(j2, "accepts");
    ASSERT_EQ(json_array_size(acc2), 4u);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(acc2, i);
        EXPECT_STREQ(json_string_value(json_object_get(e, "asset")), options[i].asset);
        EXPECT_STREQ(json_string_value(json_object_get(json_object_get(e, "extra"), "name")),
                     options[i].name);
    }
    // v1: the chain outside the legacy package's enum is left out.
    json_t *acc1 = json_object_get(j1, "accepts");
    ASSERT_EQ(json_array_size(acc1), 3u);
    EXPECT_STREQ(json_string_value(json_object_get(json_array_get(acc1, 1), "asset")), eurc);
    EXPECT_STREQ(json_string_value(json_object_get(json_array_get(acc1, 1), "network")),
                 "base-sepolia");
    json_decref(j1);
    json_decref(j2);

    struct stat st;
    if (stat((repo + "/js/node_modules/@x402/core").c_str(), &st) != 0
        || std::system("node --version > /dev/null 2>&1") != 0) {
        GTEST_SKIP() << "node or js/node_modules missing";
    }
    std::string in = "/tmp/x402-several-" + std::to_string(getpid()) + ".json";
    std::string out = in + ".out";
    std::string j = "{";
    x402::json_append_member(j, "header", header, true);
    j += ",\"body\":" + body + "}";
    std::ofstream(in) << j;
    // --any-asset: EURC and the local token are outside @x402/evm's default
    // assets, which a default client's spend controls refuse.
    std::string cmd = "cd " + repo + "/js && node check-402.mjs --any-asset < " + in + " > "
                      + out + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    EXPECT_EQ(rc, 0) << ss.str();
    std::remove(in.c_str());
    std::remove(out.c_str());
}
