#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eip712.hpp"
#include "hex.hpp"
#include "signature.hpp"

namespace {

using namespace x402;

const char *digest_hex =
    "01c660eaddb82ae265e0d01c2d81ac5be8ccb1dbcf23cf69e9efdc0359b26b68";
const char *sig_hex =
    "e8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b1"
    "40f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c";
const char *high_s_hex =
    "e8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b1"
    "bf0d46ef8fab928e79fded556f131993d218ce4b466cfad57383dc4c6d515a821b";
const char *signer_hex = "f39fd6e51aad88f6f4ce6ab8827279cfffb92266";

struct Fixture : ::testing::Test {
    Hash32 digest{};
    std::vector<uint8_t> sig;
    void SetUp() override
    {
        ASSERT_TRUE(hex_decode_to(digest_hex, digest.data(), 32));
        sig = *hex_decode(sig_hex);
    }
    SigStatus recover(const std::vector<uint8_t> &s, Address &out)
    {
        return recover_signer(digest, s.data(), s.size(), out);
    }
};

TEST_F(Fixture, RecoversNotesVector)
{
    Address a{};
    ASSERT_EQ(recover(sig, a), SigStatus::ok);
    EXPECT_EQ(hex_encode(a), signer_hex);
}

TEST_F(Fixture, RejectsHighSTwin)
{
    Address a{};
    EXPECT_EQ(recover(*hex_decode(high_s_hex), a), SigStatus::high_s);
}

TEST_F(Fixture, RejectsRawRecoveryId)
{
    Address a{};
    auto s = sig;
    s[64] = 1;  // 28 - 27: the same signature with a raw recovery id
    EXPECT_EQ(recover(s, a), SigStatus::bad_v);
    s[64] = 0;
    EXPECT_EQ(recover(s, a), SigStatus::bad_v);
    s[64] = 29;
    EXPECT_EQ(recover(s, a), SigStatus::bad_v);
    s[64] = 27;  // the other parity recovers a different key
    Address b{};
    ASSERT_EQ(recover(s, b), SigStatus::ok);
    EXPECT_NE(hex_encode(b), signer_hex);
}

TEST_F(Fixture, FlippedByteChangesSigner)
{
    for (size_t i : {0, 31, 32, 40, 63}) {
        auto s = sig;
        s[i] ^= 0x01;
        Address a{};
        SigStatus st = recover(s, a);
        EXPECT_TRUE(st != SigStatus::ok || hex_encode(a) != signer_hex)
            << "byte " << i;
    }
}

TEST_F(Fixture, WrongDigestChangesSigner)
{
    digest[5] ^= 0x80;
    Address a{};
    SigStatus st = recover(sig, a);
    EXPECT_TRUE(st != SigStatus::ok || hex_encode(a) != signer_hex);
}

TEST_F(Fixture, LengthOtherThan65IsUncheckable)
{
    Address a{};
    std::vector<uint8_t> s64(sig.begin(), sig.begin() + 64);
    EXPECT_EQ(recover(s64, a), SigStatus::bad_length);
    auto s66 = sig;
    s66.push_back(0);
    EXPECT_EQ(recover(s66, a), SigStatus::bad_length);
    EXPECT_EQ(recover_signer(digest, nullptr, 0, a), SigStatus::bad_length);
}

TEST_F(Fixture, RejectsZeroOrOverflowingRS)
{
    Address a{};
    auto s = sig;
    std::fill(s.begin(), s.begin() + 32, 0);
    EXPECT_EQ(recover(s, a), SigStatus::bad_rs);
    s = sig;
    std::fill(s.begin() + 32, s.begin() + 64, 0);
    EXPECT_EQ(recover(s, a), SigStatus::bad_rs);
    s = sig;
    std::fill(s.begin(), s.begin() + 32, 0xff);  // r >= n
    EXPECT_EQ(recover(s, a), SigStatus::bad_rs);
    // s exactly n/2 is still low; s = n/2 + 1 is high.
    s = sig;
    auto half = *hex_decode(
        "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");
    std::copy(half.begin(), half.end(), s.begin() + 32);
    EXPECT_NE(recover(s, a), SigStatus::high_s);
    s[63] = 0xa1;
    EXPECT_EQ(recover(s, a), SigStatus::high_s);
}

TEST(Signature, MessagesAreStatic)
{
    for (auto st : {SigStatus::ok, SigStatus::bad_length, SigStatus::bad_v,
                    SigStatus::high_s, SigStatus::bad_rs,
                    SigStatus::no_recovery}) {
        ASSERT_NE(sig_status_message(st), nullptr);
    }
}

}  // namespace
