#include "eip712.hpp"

#include <cstring>
#include <initializer_list>

#include "hex.hpp"
#include "x402/x402.h"

namespace x402 {

// keccak256("EIP712Domain(string name,string version,uint256 chainId,"
//           "address verifyingContract)")
const Hash32 domain_typehash = {
    0x8b, 0x73, 0xc3, 0xc6, 0x9b, 0xb8, 0xfe, 0x3d, 0x51, 0x2e, 0xcc,
    0x4c, 0xf7, 0x59, 0xcc, 0x79, 0x23, 0x9f, 0x7b, 0x17, 0x9b, 0x0f,
    0xfa, 0xca, 0xa9, 0xa7, 0x5d, 0x52, 0x2b, 0x39, 0x40, 0x0f};

// keccak256("TransferWithAuthorization(address from,address to,uint256 "
//           "value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")
const Hash32 transfer_with_authorization_typehash = {
    0x7c, 0x7c, 0x6c, 0xdb, 0x67, 0xa1, 0x87, 0x43, 0xf4, 0x9e, 0xc6,
    0xfa, 0x9b, 0x35, 0xf5, 0x0d, 0x52, 0xed, 0x05, 0xcb, 0xed, 0x4c,
    0xc5, 0x92, 0xe1, 0x3b, 0x44, 0x50, 0x1c, 0x1a, 0x22, 0x67};

std::optional<U256> u256_from_decimal(std::string_view s) noexcept
{
    if (s.empty() || s.size() > X402_MAX_AMOUNT_DIGITS) {
        return std::nullopt;
    }
    // Up to 19 digits fit in 64 bits: timestamps and amounts usually do.
    if (s.size() <= 19) {
        uint64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9') {
                return std::nullopt;
            }
            v = v * 10 + uint64_t(c - '0');
        }
        return u256_from_u64(v);
    }
    // Schoolbook multiply-by-10-and-add over 32-bit limbs, least
    // significant first; a carry out of the top limb is an overflow.
    uint32_t limb[8] = {};
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        uint64_t carry = uint64_t(c - '0');
        for (uint32_t &l : limb) {
            uint64_t t = uint64_t(l) * 10 + carry;
            l = uint32_t(t);
            carry = t >> 32;
        }
        if (carry != 0) {
            return std::nullopt;
        }
    }
    U256 out;
    for (int i = 0; i < 8; i++) {
        uint32_t l = limb[7 - i];
        out[4 * i] = uint8_t(l >> 24);
        out[4 * i + 1] = uint8_t(l >> 16);
        out[4 * i + 2] = uint8_t(l >> 8);
        out[4 * i + 3] = uint8_t(l);
    }
    return out;
}

std::optional<uint64_t> u256_to_u64(const U256 &v) noexcept
{
    for (int i = 0; i < 24; i++) {
        if (v[i] != 0) {
            return std::nullopt;
        }
    }
    uint64_t r = 0;
    for (int i = 24; i < 32; i++) {
        r = (r << 8) | v[i];
    }
    return r;
}

U256 u256_from_u64(uint64_t v) noexcept
{
    U256 out{};
    for (int i = 31; i >= 24; i--) {
        out[i] = uint8_t(v);
        v >>= 8;
    }
    return out;
}

namespace {

// Nibble value of each character, 0x10 for a non-hex one: one load a digit
// instead of three range tests (addresses are decoded four times a
// verification).
constexpr std::array<uint8_t, 256> make_nibbles()
{
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; c++) {
        int v = hex_value(static_cast<char>(c));
        t[c] = v < 0 ? 0x10 : static_cast<uint8_t>(v);
    }
    return t;
}

constexpr std::array<uint8_t, 256> nibbles = make_nibbles();

}  // namespace

bool hex_to_bytes(std::string_view digits, uint8_t *out, size_t len) noexcept
{
    if (digits.size() != 2 * len) {
        return false;
    }
    auto d = reinterpret_cast<const unsigned char *>(digits.data());
    unsigned bad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned hi = nibbles[d[2 * i]], lo = nibbles[d[2 * i + 1]];
        bad |= hi | lo;
        out[i] = static_cast<uint8_t>(hi << 4 | (lo & 0x0f));
    }
    return (bad & 0x10) == 0;
}

std::optional<Address> address_from_hex(std::string_view s) noexcept
{
    Address a;
    if (s.size() != 42 || s[0] != '0' || s[1] != 'x' ||
        !hex_to_bytes(s.substr(2), a.data(), a.size())) {
        return std::nullopt;
    }
    return a;
}

bool address_text_equal(std::string_view a, std::string_view b) noexcept
{
    for (std::string_view *s : {&a, &b}) {
        if (s->size() >= 2 && (*s)[0] == '0' && (*s)[1] == 'x') {
            s->remove_prefix(2);
        }
        if (s->size() != 40) {
            return false;
        }
    }
    auto pa = reinterpret_cast<const unsigned char *>(a.data());
    auto pb = reinterpret_cast<const unsigned char *>(b.data());
    unsigned bad = 0, diff = 0;
    for (size_t i = 0; i < 40; i++) {
        unsigned x = nibbles[pa[i]], y = nibbles[pb[i]];
        bad |= x | y;
        diff |= x ^ y;
    }
    return (bad & 0x10) == 0 && diff == 0;
}

namespace {

// Appends one 32-byte word to the running hash input.
struct Words {
    uint8_t *p;
    void put(const uint8_t *w)
    {
        std::memcpy(p, w, 32);
        p += 32;
    }
    void put_address(const Address &a)
    {
        std::memset(p, 0, 12);
        std::memcpy(p + 12, a.data(), 20);
        p += 32;
    }
};

}  // namespace

Hash32 domain_separator(std::string_view name, std::string_view version,
                        uint64_t chain_id, const Address &verifying_contract)
    noexcept
{
    uint8_t buf[5 * 32];
    Words w{buf};
    w.put(domain_typehash.data());
    w.put(keccak256(name).data());
    w.put(keccak256(version).data());
    w.put(u256_from_u64(chain_id).data());
    w.put_address(verifying_contract);
    return keccak256(buf, sizeof(buf));
}

Hash32 struct_hash(const TransferAuthorization &a) noexcept
{
    uint8_t buf[7 * 32];
    Words w{buf};
    w.put(transfer_with_authorization_typehash.data());
    w.put_address(a.from);
    w.put_address(a.to);
    w.put(a.value.data());
    w.put(a.valid_after.data());
    w.put(a.valid_before.data());
    w.put(a.nonce.data());
    return keccak256(buf, sizeof(buf));
}

Hash32 typed_data_digest(const Hash32 &domain_sep, const Hash32 &struct_h)
    noexcept
{
    uint8_t buf[2 + 32 + 32];
    buf[0] = 0x19;
    buf[1] = 0x01;
    std::memcpy(buf + 2, domain_sep.data(), 32);
    std::memcpy(buf + 34, struct_h.data(), 32);
    return keccak256(buf, sizeof(buf));
}

}  // namespace x402
