#include <gtest/gtest.h>
#include <jansson.h>

#include <memory>
#include <string>
#include <vector>

#include "base64.hpp"
#include "facilitator.hpp"
#include "offer.hpp"
#include "payment.hpp"
#include "x402/x402.h"

namespace {

x402_str_t s(const std::string &p)
{
    return x402_str_t{p.data(), p.size()};
}

struct Pool {
    std::vector<std::unique_ptr<char[]>> blocks;
    bool fail = false;
    static void *alloc(void *ctx, size_t n)
    {
        auto *p = static_cast<Pool *>(ctx);
        if (p->fail) {
            return nullptr;
        }
        p->blocks.emplace_back(new char[n]);
        return p->blocks.back().get();
    }
    x402_allocator_t a{&Pool::alloc, this};
};

std::string str(x402_str_t v)
{
    return std::string(v.data, v.len);
}

struct Result {
    int rc;
    x402_facilitator_result_t r;
    Pool pool;
    std::string reason() const { return str(r.reason); }
    std::string message() const { return str(r.message); }
    std::string header_json() const
    {
        if (r.response_header.len == 0) {
            return "";
        }
        return x402::base64_decode(str(r.response_header)).value_or("<bad>");
    }
};

std::unique_ptr<Result> verify(int status, const std::string &body)
{
    auto res = std::make_unique<Result>();
    res->rc = x402_facilitator_parse_verify(status, s(body), &res->pool.a,
                                            &res->r);
    EXPECT_EQ(res->rc, res->r.outcome);
    return res;
}

std::unique_ptr<Result> settle(int status, const std::string &body)
{
    auto res = std::make_unique<Result>();
    res->rc = x402_facilitator_parse_settle(status, s(body), &res->pool.a,
                                            &res->r);
    EXPECT_EQ(res->rc, res->r.outcome);
    return res;
}

const std::string payer = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const std::string tx =
    "0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0";

// ---- /verify, coinbase/x402 specs/x402-specification-v2.md 7.1 and 9 ----

TEST(FacilitatorVerify, TsValid)
{
    auto r = verify(200, "{\"isValid\":true,\"payer\":\"" + payer + "\"}");
    EXPECT_EQ(r->rc, X402_FAC_OK);
    EXPECT_EQ(str(r->r.payer), payer);
    EXPECT_EQ(r->r.response_header.len, 0u);
}

TEST(FacilitatorVerify, PayerIsChecksummedOrDropped)
{
    auto r = verify(200, "{\"isValid\":true,\"payer\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\"}");
    EXPECT_EQ(str(r->r.payer), payer);
    r = verify(200, "{\"isValid\":true,\"payer\":\"\\r\\nSet-Cookie: x\"}");
    EXPECT_EQ(r->rc, X402_FAC_OK);
    EXPECT_EQ(r->r.payer.len, 0u);
    r = verify(200, "{\"isValid\":true,\"payer\":null}");
    EXPECT_EQ(r->rc, X402_FAC_OK);
}

TEST(FacilitatorVerify, TsInvalidOn200)
{
    auto r = verify(200, "{\"isValid\":false,\"invalidReason\":"
                         "\"invalid_exact_evm_signature\",\"invalidMessage\":"
                         "\"bad sig\",\"payer\":\"" + payer + "\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_exact_evm_signature");
    EXPECT_EQ(r->message(), "bad sig");
    EXPECT_EQ(str(r->r.payer), payer);
}

TEST(FacilitatorVerify, InvalidWithoutReason)
{
    auto r = verify(200, "{\"isValid\":false,\"invalidReason\":null}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_payment");
}

TEST(FacilitatorVerify, InvalidOnNon200)
{
    auto r = verify(400, "{\"isValid\":false,\"invalidReason\":\"insufficient_funds\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "insufficient_funds");
}

TEST(FacilitatorVerify, GoStyle500)
{
    auto r = verify(500, "{\"error\":\"invalid_exact_evm_payload_authorization_value_mismatch: value 10 != 1000\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_exact_evm_payload_authorization_value_mismatch");
    EXPECT_EQ(r->message(), "value 10 != 1000");
    r = verify(500, "{\"error\":\"invalid_payload\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_payload");
    EXPECT_EQ(r->message(), "");
}

TEST(FacilitatorVerify, Broken)
{
    const std::pair<int, std::string> cases[] = {
        {200, ""},
        {200, "garbage"},
        {200, "<html>502 Bad Gateway</html>"},
        {200, "[]"},
        {200, "\"isValid\""},
        {200, "{}"},
        {200, "{\"isValid\":\"true\"}"},
        {200, "{\"isValid\":1}"},
        {200, "{\"isValid\":null}"},
        {200, "{\"isValid\":true,\"isValid\":false}"},  // duplicate keys
        {200, "{\"isValid\":true"},                      // truncated
        {200, "{\"isValid\":true} trailing"},
        {500, "{\"error\":\"internal server error\"}"},
        {500, "{\"error\":\"Facilitator exploded: boom\"}"},
        {500, "Internal Server Error"},
        {400, "{\"error\":\"missing paymentPayload\"}"},
        {502, ""},
        {0, ""},
        {404, "{\"error\":\"invalid_payload\"}"},  // only 500 is Go style
        {500, "{\"isValid\":true}"},              // true on a non-200
        {302, "{\"isValid\":true}"},
    };
    for (auto &[status, body] : cases) {
        auto r = verify(status, body);
        EXPECT_EQ(r->rc, X402_FAC_BROKEN) << status << ' ' << body;
        EXPECT_FALSE(r->reason().empty()) << status << ' ' << body;
    }
    EXPECT_NE(verify(503, "")->reason().find("503"), std::string::npos);
}

TEST(FacilitatorVerify, Bounds)
{
    std::string big = "{\"isValid\":true,\"pad\":\"" + std::string(70000, 'a') + "\"}";
    auto r = verify(200, big);
    EXPECT_EQ(r->rc, X402_FAC_BROKEN);
    EXPECT_NE(r->reason().find("65536"), std::string::npos);
    std::string deep = "{\"isValid\":true,\"x\":" + std::string(40, '[')
                       + std::string(40, ']') + "}";
    r = verify(200, deep);
    EXPECT_EQ(r->rc, X402_FAC_BROKEN);
    EXPECT_NE(r->reason().find("deeper"), std::string::npos);
    // Brackets inside strings do not count.
    r = verify(200, "{\"isValid\":true,\"x\":\"" + std::string(40, '[') + "\\\"\"}");
    EXPECT_EQ(r->rc, X402_FAC_OK);
}

TEST(FacilitatorVerify, ReasonIsSanitizedAndBounded)
{
    auto r = verify(200, "{\"isValid\":false,\"invalidReason\":\"a\\r\\nX-Evil: 1\","
                         "\"invalidMessage\":\"" + std::string(5000, 'm') + "\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "a  X-Evil: 1");
    EXPECT_EQ(r->message().size(), 1024u);
    // A cut never splits a UTF-8 character.
    std::string e;
    for (int i = 0; i < 200; i++) {
        e += "\xc3\xa9";
    }
    r = verify(200, "{\"isValid\":false,\"invalidReason\":\"x" + e + "\"}");
    EXPECT_EQ(r->reason().size(), 255u);
}

TEST(FacilitatorVerify, AllocationFailure)
{
    Pool pool;
    pool.fail = true;
    x402_facilitator_result_t out{};
    std::string body = "{\"isValid\":false,\"invalidReason\":\"x\"}";
    EXPECT_EQ(x402_facilitator_parse_verify(200, s(body), &pool.a, &out), -1);
}

// ---- /settle ----

TEST(FacilitatorSettle, Success)
{
    std::string body = "{\"success\":true,\"transaction\":\"" + tx
                       + "\",\"network\":\"eip155:84532\",\"payer\":\"" + payer
                       + "\",\"extra\":{\"ignored\":[1,2]}}";
    auto r = settle(200, body);
    EXPECT_EQ(r->rc, X402_FAC_OK);
    EXPECT_EQ(str(r->r.transaction), tx);
    EXPECT_EQ(str(r->r.network), "eip155:84532");
    EXPECT_EQ(str(r->r.payer), payer);
    EXPECT_EQ(r->header_json(),
              "{\"success\":true,\"payer\":\"" + payer + "\",\"transaction\":\""
                  + tx + "\",\"network\":\"eip155:84532\"}");
}

TEST(FacilitatorSettle, TsFailureOn200)
{
    std::string body = "{\"success\":false,\"errorReason\":"
                       "\"invalid_exact_evm_transaction_failed\",\"errorMessage\":"
                       "\"reverted\",\"transaction\":\"\",\"network\":"
                       "\"eip155:84532\",\"payer\":\"" + payer + "\"}";
    auto r = settle(200, body);
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_exact_evm_transaction_failed");
    EXPECT_EQ(r->message(), "reverted");
    EXPECT_EQ(r->header_json(),
              "{\"success\":false,\"errorReason\":"
              "\"invalid_exact_evm_transaction_failed\",\"errorMessage\":"
              "\"reverted\",\"payer\":\"" + payer + "\",\"transaction\":\"\","
              "\"network\":\"eip155:84532\"}");
}

TEST(FacilitatorSettle, FailureWithNullsAndNon200)
{
    auto r = settle(200, "{\"success\":false,\"errorReason\":null,"
                         "\"transaction\":null,\"network\":null}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "unexpected_settle_error");
    EXPECT_EQ(r->header_json(),
              "{\"success\":false,\"errorReason\":\"unexpected_settle_error\","
              "\"transaction\":\"\",\"network\":\"\"}");
    r = settle(400, "{\"success\":false,\"errorReason\":\"invalid_payload\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_payload");
}

TEST(FacilitatorSettle, GoStyle500HasNoHeader)
{
    auto r = settle(500, "{\"error\":\"invalid_exact_evm_transaction_failed: reverted\"}");
    EXPECT_EQ(r->rc, X402_FAC_REFUSED);
    EXPECT_EQ(r->reason(), "invalid_exact_evm_transaction_failed");
    EXPECT_EQ(r->r.response_header.len, 0u);
}

TEST(FacilitatorSettle, Broken)
{
    const std::pair<int, std::string> cases[] = {
        {200, ""},
        {200, "null"},
        {200, "{\"isValid\":true}"},
        {200, "{\"success\":\"true\",\"transaction\":\"0x1\",\"network\":\"n\"}"},
        {200, "{\"success\":true}"},
        {200, "{\"success\":true,\"transaction\":\"\",\"network\":\"eip155:84532\"}"},
        {200, "{\"success\":true,\"transaction\":\"0x1\"}"},
        {200, "{\"success\":true,\"transaction\":\"0x1\",\"network\":\"\"}"},
        {200, "{\"success\":true,\"transaction\":\"0x 1\",\"network\":\"n\"}"},
        {200, "{\"success\":true,\"transaction\":\"0x1\",\"network\":7}"},
        {200, "{\"success\":true,\"transaction\":\"" + std::string(300, 'a')
                  + "\",\"network\":\"n\"}"},
        {500, "oops"},
        {504, ""},
        // what jansson's strict mode refused, refused by the simdjson parse
        {200, "{\"success\":true,\"success\":true,\"transaction\":\"0x1\","
              "\"network\":\"n\"}"},
        {200, "{\"success\":true,\"transaction\":\"0x1\",\"network\":\"n\","
              "\"extra\":{\"a\":1,\"a\":2}}"},
        {200, "{\"success\":true,\"transaction\":\"0x1\",\"network\":\"n\","
              "\"x\":\"a\\u0000b\"}"},
        {200, "{\"success\":true,\"transaction\":\"0x1\",\"network\":\"n\"} x"},
        {200, "{\"success\":true,\"transaction\":\"0x1\",\"network\":\"\xff\"}"},
    };
    for (auto &[status, body] : cases) {
        auto r = settle(status, body);
        EXPECT_EQ(r->rc, X402_FAC_BROKEN) << status << ' ' << body;
        EXPECT_FALSE(r->reason().empty());
        EXPECT_EQ(r->r.response_header.len, 0u);
    }
}

TEST(FacilitatorSettle, SuccessOnNon200KeepsTransactionForTheLog)
{
    auto r = settle(500, "{\"success\":true,\"transaction\":\"" + tx
                             + "\",\"network\":\"eip155:84532\"}");
    EXPECT_EQ(r->rc, X402_FAC_BROKEN);
    EXPECT_EQ(str(r->r.transaction), tx);
    EXPECT_NE(r->reason().find("500"), std::string::npos);
}

TEST(FacilitatorSettle, FailureHeader)
{
    Pool pool;
    x402_str_t h{};
    std::string reason = "invalid_exact_evm_payload_authorization_valid_before";
    std::string net = "eip155:84532";
    ASSERT_EQ(x402_settle_failure_header(s(reason), s(net), s(payer), &pool.a, &h), 0);
    EXPECT_EQ(*x402::base64_decode(str(h)),
              "{\"success\":false,\"errorReason\":\"" + reason
                  + "\",\"transaction\":\"\",\"network\":\"eip155:84532\","
                    "\"payer\":\"" + payer + "\"}");
    ASSERT_EQ(x402_settle_failure_header(s("a\"b"), s(net), s(""), &pool.a, &h), 0);
    EXPECT_EQ(*x402::base64_decode(str(h)),
              "{\"success\":false,\"errorReason\":\"a\\\"b\",\"transaction\":\"\","
              "\"network\":\"eip155:84532\"}");
}

// ---- request body, coinbase/x402 specs/x402-specification-v2.md 7.1 ----

struct OfferFree {
    void operator()(x402_offer_t *o) const { x402_offer_free(o); }
};

std::unique_ptr<x402_offer_t, OfferFree> offer()
{
    const x402_network_t *n = x402_network_find(x402_str_t{"base-sepolia", 12});
    std::string pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    x402_requirement_t r{};
    r.scheme = x402_str_t{"exact", 5};
    r.network = n;
    r.amount = x402_str_t{"1000", 4};
    r.asset = x402_str_t{n->usdc, 42};
    r.pay_to = s(pay_to);
    r.asset_name = x402_str_t{"USDC", 4};
    r.asset_version = x402_str_t{"2", 1};
    r.asset_decimals = 6;
    r.max_timeout = 300;
    const char *err = nullptr;
    std::unique_ptr<x402_offer_t, OfferFree> o(x402_offer_create(&r, 1, &err));
    EXPECT_TRUE(o) << err;
    return o;
}

TEST(FacilitatorRequest, V2)
{
    auto o = offer();
    x402_payment_s p;
    p.version = 2;
    p.json = "{\"x402Version\":2,\"payload\":{\"signature\":\"0x00\"},\"accepted\":{}}";
    Pool pool;
    x402_str_t body{};
    ASSERT_EQ(x402_facilitator_request(&p, o.get(), 0, s("http://h/r"), &pool.a, &body), 0);
    EXPECT_EQ(str(body),
              "{\"x402Version\":2,\"paymentPayload\":" + p.json
                  + ",\"paymentRequirements\":{\"scheme\":\"exact\",\"network\":"
                    "\"eip155:84532\",\"amount\":\"1000\",\"asset\":"
                    "\"0x036CbD53842c5426634e7929541eC2318f3dCF7e\",\"payTo\":"
                    "\"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\","
                    "\"maxTimeoutSeconds\":300,\"extra\":{\"name\":\"USDC\","
                    "\"version\":\"2\"}}}");
}

TEST(FacilitatorRequest, V1CarriesTheResource)
{
    auto o = offer();
    x402_payment_s p;
    p.version = 1;
    p.json = "{\"x402Version\":1,\"scheme\":\"exact\",\"network\":\"base-sepolia\",\"payload\":{}}";
    Pool pool;
    x402_str_t body{};
    ASSERT_EQ(x402_facilitator_request(&p, o.get(), 0, s("http://h/r?\"x\""),
                                       &pool.a, &body), 0);
    json_error_t e;
    json_t *j = json_loadb(body.data, body.len, JSON_REJECT_DUPLICATES, &e);
    ASSERT_NE(j, nullptr) << e.text;
    EXPECT_EQ(json_integer_value(json_object_get(j, "x402Version")), 1);
    json_t *req = json_object_get(j, "paymentRequirements");
    EXPECT_STREQ(json_string_value(json_object_get(req, "resource")), "http://h/r?\"x\"");
    EXPECT_STREQ(json_string_value(json_object_get(req, "maxAmountRequired")), "1000");
    EXPECT_STREQ(json_string_value(json_object_get(req, "network")), "base-sepolia");
    EXPECT_STREQ(json_string_value(json_object_get(json_object_get(j, "paymentPayload"), "network")),
                 "base-sepolia");
    json_decref(j);
    // The payload bytes are embedded verbatim.
    EXPECT_NE(str(body).find(p.json), std::string::npos);
}

TEST(FacilitatorRequest, RejectsBadArguments)
{
    auto o = offer();
    x402_payment_s p;
    p.version = 3;
    p.json = "{}";
    Pool pool;
    x402_str_t body{};
    EXPECT_EQ(x402_facilitator_request(&p, o.get(), 0, s("u"), &pool.a, &body), -1);
    p.version = 2;
    EXPECT_EQ(x402_facilitator_request(&p, o.get(), 1, s("u"), &pool.a, &body), -1);
    EXPECT_EQ(x402_facilitator_request(nullptr, o.get(), 0, s("u"), &pool.a, &body), -1);
    pool.fail = true;
    EXPECT_EQ(x402_facilitator_request(&p, o.get(), 0, s("u"), &pool.a, &body), -1);
}

}  // namespace


// ---- labels of a queued settlement (metrics), from its /settle body ----

TEST(SettleLabels, V2RequirementsGiveTheLabels)
{
    Pool pool;
    x402_settle_labels_t l;
    const std::string body =
        R"({"x402Version":2,"paymentPayload":{"x402Version":2},)"
        R"("paymentRequirements":{"scheme":"exact","network":"eip155:84532",)"
        R"("amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e",)"
        R"("payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}})";
    ASSERT_EQ(x402_settle_labels(s(body), &pool.a, &l), 0);
    EXPECT_EQ(str(l.network), "eip155:84532");
    EXPECT_EQ(str(l.amount), "1000");
    EXPECT_EQ(str(l.asset), "0x036CbD53842c5426634e7929541eC2318f3dCF7e");
    EXPECT_EQ(str(l.pay_to), "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
}

TEST(SettleLabels, V1NamesTheNetworkAndMaxAmountRequired)
{
    Pool pool;
    x402_settle_labels_t l;
    const std::string body =
        R"({"x402Version":1,"paymentPayload":{},"paymentRequirements":)"
        R"({"network":"base-sepolia","maxAmountRequired":"2000"}})";
    ASSERT_EQ(x402_settle_labels(s(body), &pool.a, &l), 0);
    EXPECT_EQ(str(l.network), "eip155:84532");
    EXPECT_EQ(str(l.amount), "2000");
    EXPECT_EQ(l.asset.len, 0u);
    EXPECT_EQ(l.pay_to.len, 0u);
}

TEST(SettleLabels, GarbageAndUnknownNetworksGiveNoLabels)
{
    Pool pool;
    x402_settle_labels_t l;
    for (const std::string body :
         {std::string("not json"), std::string("[]"),
          std::string(R"({"paymentRequirements":[]})"),
          std::string(R"({"paymentRequirements":{"network":"mars",)"
                      R"("amount":1000}})")}) {
        ASSERT_EQ(x402_settle_labels(s(body), &pool.a, &l), 0) << body;
        EXPECT_EQ(l.network.len, 0u) << body;
        EXPECT_EQ(l.amount.len, 0u) << body;
    }
    pool.fail = true;
    const std::string ok =
        R"({"paymentRequirements":{"network":"base","amount":"1"}})";
    EXPECT_EQ(x402_settle_labels(s(ok), &pool.a, &l), -1);
}
