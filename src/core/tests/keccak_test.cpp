#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <string>
#include <vector>

#include "hex.hpp"
#include "keccak.hpp"
#include "x402/x402.h"

namespace {

std::string hk(std::string_view s)
{
    return x402::hex_encode(x402::keccak256(s));
}

TEST(Keccak, StandardVectors)
{
    EXPECT_EQ(hk(""),
              "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    EXPECT_EQ(hk("abc"),
              "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    EXPECT_EQ(hk("The quick brown fox jumps over the lazy dog"),
              "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15");
    // Exactly one rate block, and 200 bytes across two blocks (values from
    // viem's keccak256).
    EXPECT_EQ(hk(std::string(136, 'x')),
              "50da8ef3747b7a7f01d08563aa11c72a2a668563fb928adc6e8d2a1ab4e36096");
    EXPECT_EQ(hk(std::string(200, 'a')),
              "96ea54061def936c4be90b518992fdc6f12f535068a256229aca54267b4d084d");
}

TEST(Keccak, EthereumTypeHashes)
{
    // The two type hashes: EIP-712 "Definition of hashStruct" over
    // EIP712Domain and EIP-3009's TransferWithAuthorization.
    EXPECT_EQ(hk("EIP712Domain(string name,string version,uint256 chainId,"
                 "address verifyingContract)"),
              "8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f");
    EXPECT_EQ(hk("TransferWithAuthorization(address from,address to,uint256 "
                 "value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"),
              "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267");
    // js/vectors/gen-vectors.mjs: nonce = keccak256("x402-test-vector-1").
    EXPECT_EQ(hk("x402-test-vector-1"),
              "4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0");
}

x402::Hash32 openssl_sha3(const std::string &s)
{
    x402::Hash32 out{};
    unsigned int n = 0;
    EXPECT_EQ(EVP_Digest(s.data(), s.size(), out.data(), &n, EVP_sha3_256(),
                         nullptr),
              1);
    EXPECT_EQ(n, 32u);
    return out;
}

TEST(Keccak, PermutationMatchesOpenSslSha3)
{
    // SHA3-256 is the same sponge with padding 0x06: equal results on every
    // length 0..600 (all block-boundary cases) validate the permutation.
    std::string s;
    for (size_t len = 0; len <= 600; len++) {
        EXPECT_EQ(x402::sponge256(s.data(), s.size(), 0x06), openssl_sha3(s))
            << "length " << len;
        s.push_back(static_cast<char>((len * 131 + 7) & 0xff));
    }
}

TEST(Keccak, IncrementalEqualsOneShot)
{
    std::string s;
    for (int i = 0; i < 500; i++) {
        s.push_back(static_cast<char>(i * 37));
    }
    for (size_t split : {0, 1, 7, 135, 136, 137, 271, 272, 499, 500}) {
        x402::Keccak256 k;
        k.update(s.data(), split);
        k.update(s.data() + split, s.size() - split);
        EXPECT_EQ(k.finish(), x402::keccak256(s)) << "split " << split;
    }
}

TEST(Keccak, CApi)
{
    unsigned char out[32];
    x402_keccak256("abc", 3, out);
    EXPECT_EQ(x402::hex_encode(out, 32),
              "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    x402_keccak256(nullptr, 0, out);
    EXPECT_EQ(x402::hex_encode(out, 32),
              "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
}

}  // namespace
