#include <gtest/gtest.h>

#include <string>

#include "chain.hpp"

using namespace x402;

namespace {

// viem: toFunctionSelector / encodeFunctionData of
// authorizationState(address,bytes32)
constexpr const char *viem_calldata =
    "0xe94a0102000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    "abababababababababababababababababababababababababababababababab";

std::string settle_body(const std::string &from, const std::string &nonce,
                        const std::string &asset, const std::string &network)
{
    return R"({"x402Version":2,"paymentPayload":{"x402Version":2,"payload":)"
           R"({"signature":"0x00","authorization":{"from":")" + from +
           R"(","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C",)"
           R"("value":"1000","validAfter":"0","validBefore":"9999999999",)"
           R"("nonce":")" + nonce + R"("}}},"paymentRequirements":)"
           R"({"scheme":"exact","network":")" + network +
           R"(","amount":"1000","asset":")" + asset + R"("}})";
}

}  // namespace

TEST(Chain, SelectorIsKeccakOfTheSignature)
{
    auto s = authorization_state_selector();
    EXPECT_EQ(s[0], 0xe9);
    EXPECT_EQ(s[1], 0x4a);
    EXPECT_EQ(s[2], 0x01);
    EXPECT_EQ(s[3], 0x02);
}

TEST(Chain, CalldataMatchesViem)
{
    auto d = authorization_state_calldata(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB");
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, viem_calldata);
}

TEST(Chain, CalldataRefusesMalformed)
{
    const std::string nonce = "0x" + std::string(64, 'a');
    EXPECT_FALSE(authorization_state_calldata("0x1234", nonce));
    EXPECT_FALSE(authorization_state_calldata(
        "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266", nonce));
    EXPECT_FALSE(authorization_state_calldata(
        "0xg39Fd6e51aad88F6F4ce6aB8827279cffFb92266", nonce));
    EXPECT_FALSE(authorization_state_calldata(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x" + std::string(63, 'a')));
    EXPECT_FALSE(authorization_state_calldata(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", nonce + "00"));
}

TEST(Chain, RequestFromASettleBody)
{
    auto c = authorization_state_request(settle_body(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x" + std::string(32, 'a') + std::string(32, 'b'),
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "base-sepolia"));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->network, "eip155:84532");
    EXPECT_EQ(c->request,
              R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"to":)"
              R"("0x036cbd53842c5426634e7929541ec2318f3dcf7e","data":")"
              "0xe94a0102000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266" +
              std::string(32, 'a') + std::string(32, 'b') + R"("},"latest"]})");

    auto v2 = authorization_state_request(settle_body(
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x" + std::string(64, '1'),
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "eip155:8453"));
    ASSERT_TRUE(v2);
    EXPECT_EQ(v2->network, "eip155:8453");
}

TEST(Chain, RequestRefusesIncompleteBodies)
{
    const std::string from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    const std::string nonce = "0x" + std::string(64, '1');
    const std::string asset = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
    EXPECT_FALSE(authorization_state_request(""));
    EXPECT_FALSE(authorization_state_request("not json"));
    EXPECT_FALSE(authorization_state_request("[]"));
    EXPECT_FALSE(authorization_state_request(R"({"paymentPayload":{}})"));
    EXPECT_FALSE(authorization_state_request(settle_body(from, nonce, asset, "nowhere")));
    EXPECT_FALSE(authorization_state_request(settle_body(from, "0x12", asset, "base")));
    EXPECT_FALSE(authorization_state_request(settle_body(from, nonce, "0x12", "base")));
    EXPECT_FALSE(authorization_state_request(settle_body("0x12", nonce, asset, "base")));
    EXPECT_FALSE(authorization_state_request(std::string(70000, '[')));
}

TEST(Chain, ParseAnswers)
{
    std::string why;
    const std::string zero = "0x" + std::string(64, '0');
    const std::string one = "0x" + std::string(63, '0') + "1";
    auto ans = [](const std::string &r) {
        return R"({"jsonrpc":"2.0","id":1,"result":")" + r + R"("})";
    };
    EXPECT_EQ(authorization_state_parse(200, ans(one), &why),
              AuthorizationState::used);
    EXPECT_EQ(authorization_state_parse(200, ans(zero), &why),
              AuthorizationState::unused);
    EXPECT_EQ(authorization_state_parse(200, ans("0x" + std::string(63, '0') + "2"), &why),
              AuthorizationState::error);
    EXPECT_EQ(authorization_state_parse(200, ans("0x1"), &why),
              AuthorizationState::error);
    EXPECT_EQ(authorization_state_parse(200, ans("0x" + std::string(62, '0') + "10"), &why),
              AuthorizationState::error);
    EXPECT_EQ(authorization_state_parse(200, ans("0x"), &why),
              AuthorizationState::error);
    EXPECT_EQ(authorization_state_parse(502, ans(one), &why),
              AuthorizationState::error);
    EXPECT_EQ(why, "JSON-RPC answered HTTP 502");
    EXPECT_EQ(authorization_state_parse(
                  200, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"execution reverted"}})",
                  &why),
              AuthorizationState::error);
    EXPECT_EQ(why, "JSON-RPC error: execution reverted");
    EXPECT_EQ(authorization_state_parse(200, "garbage", &why),
              AuthorizationState::error);
    EXPECT_EQ(authorization_state_parse(200, R"({"result":1})", &why),
              AuthorizationState::error);
    EXPECT_EQ(authorization_state_parse(200, std::string(70000, ' '), &why),
              AuthorizationState::error);
}
