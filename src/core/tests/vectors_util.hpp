// Loads tests/data/vectors.json (js/vectors/gen-vectors.mjs) and builds
// the offer it describes through the C API.
#ifndef X402_TESTS_VECTORS_UTIL_HPP
#define X402_TESTS_VECTORS_UTIL_HPP

#include <gtest/gtest.h>
#include <jansson.h>

#include <memory>
#include <string>
#include <vector>

#include "x402/x402.h"

namespace x402test {

struct Vector {
    std::string name;
    std::string header;
    int version_hint = 0;
    bool decode = false;
    bool ok = false;
    std::string reason;  // "" when ok
    bool signature_unchecked = false;
    long requirement = -1;
    std::string payer;
    std::string payment_id;
    std::string digest;  // "0x..." when the generator recorded it
};

struct Requirement {
    std::string scheme, network, amount, asset, pay_to, name, version;
    uint64_t max_timeout = 0;
    uint64_t chain_id = 0;
};

struct OfferFree {
    void operator()(x402_offer_t *o) const { x402_offer_free(o); }
};
using OfferPtr = std::unique_ptr<x402_offer_t, OfferFree>;

struct PaymentFree {
    void operator()(x402_payment_t *p) const { x402_payment_free(p); }
};
using PaymentPtr = std::unique_ptr<x402_payment_t, PaymentFree>;

struct Data {
    int64_t now = 0;
    std::vector<Requirement> offer;
    std::vector<Vector> vectors;
    std::string n91_domain, n91_struct, n91_digest, n91_signature, n91_signer;
};

inline std::string str(const json_t *o, const char *k)
{
    const json_t *j = json_object_get(o, k);
    return json_is_string(j) ? std::string(json_string_value(j)) : "";
}

inline const Data &data()
{
    static const Data d = [] {
        Data d;
        json_error_t err;
        json_t *root = json_load_file(X402_TEST_DATA_DIR "/vectors.json", 0, &err);
        if (root == nullptr) {
            ADD_FAILURE() << "vectors.json: " << err.text;
            return d;
        }
        d.now = json_integer_value(json_object_get(root, "now"));
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(root, "offer"), i, r) {
            Requirement q;
            q.scheme = str(r, "scheme");
            q.network = str(r, "network");
            q.amount = str(r, "amount");
            q.asset = str(r, "asset");
            q.pay_to = str(r, "payTo");
            q.max_timeout = json_integer_value(json_object_get(r, "maxTimeoutSeconds"));
            q.chain_id = json_integer_value(json_object_get(r, "chainId"));
            json_t *extra = json_object_get(r, "extra");
            q.name = str(extra, "name");
            q.version = str(extra, "version");
            d.offer.push_back(q);
        }
        json_t *v;
        json_array_foreach(json_object_get(root, "vectors"), i, v) {
            Vector x;
            x.name = str(v, "name");
            x.header = str(v, "header");
            x.version_hint = int(json_integer_value(json_object_get(v, "version_hint")));
            x.decode = json_is_true(json_object_get(v, "decode"));
            x.ok = json_is_true(json_object_get(v, "ok"));
            x.reason = str(v, "reason");
            x.signature_unchecked = json_is_true(json_object_get(v, "signature_unchecked"));
            json_t *req = json_object_get(v, "requirement");
            x.requirement = json_is_integer(req) ? long(json_integer_value(req)) : -1;
            x.payer = str(v, "payer");
            x.payment_id = str(v, "payment_id");
            x.digest = str(v, "digest");
            d.vectors.push_back(x);
        }
        json_t *n = json_object_get(root, "notes91");
        d.n91_domain = str(n, "domainSeparator");
        d.n91_struct = str(n, "structHash");
        d.n91_digest = str(n, "digest");
        d.n91_signature = str(n, "signature");
        d.n91_signer = str(n, "signer");
        json_decref(root);
        return d;
    }();
    return d;
}

inline x402_str_t s(const std::string &v)
{
    return {v.data(), v.size()};
}

// The generator's offer through x402_offer_create.
inline OfferPtr make_offer()
{
    std::vector<x402_requirement_t> reqs;
    for (const Requirement &q : data().offer) {
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
        r.description = {"", 0};
        r.mime_type = {"", 0};
        reqs.push_back(r);
    }
    const char *err = nullptr;
    OfferPtr o(x402_offer_create(reqs.data(), reqs.size(), &err));
    EXPECT_NE(o, nullptr) << (err ? err : "");
    return o;
}

inline std::string to_string(x402_str_t v)
{
    return v.data ? std::string(v.data, v.len) : std::string();
}

}  // namespace x402test

#endif
