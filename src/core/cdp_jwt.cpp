#include "cdp_jwt.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstring>

#include "base64.hpp"
#include "json_writer.hpp"

namespace x402 {

namespace {

struct BioDeleter {
    void operator()(BIO *b) const noexcept { BIO_free(b); }
};
struct MdCtxDeleter {
    void operator()(EVP_MD_CTX *c) const noexcept { EVP_MD_CTX_free(c); }
};
struct EcdsaSigDeleter {
    void operator()(ECDSA_SIG *s) const noexcept { ECDSA_SIG_free(s); }
};

// OpenSSL keeps failures on a per-thread queue that nginx's own TLS code
// reads (ngx_ssl_error); a failure of ours must not be left there for it.
struct ErrClear {
    ~ErrClear() { ERR_clear_error(); }
};

// An encrypted PEM would otherwise make OpenSSL prompt on the terminal.
int no_passphrase(char *, int, int, void *) noexcept
{
    return -1;
}

std::string_view trim(std::string_view s) noexcept
{
    auto ws = [](char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
    };
    while (!s.empty() && ws(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && ws(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

// Printable ASCII without spaces: what may stand in a header claim and in
// the "METHOD host/path" URI claim unambiguously.
bool token_chars(std::string_view s) noexcept
{
    for (char c : s) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

std::optional<CdpKey> load_pem(std::string_view pem, const char **err)
{
    std::unique_ptr<BIO, BioDeleter> bio(
        BIO_new_mem_buf(pem.data(), int(pem.size())));
    if (!bio) {
        *err = "out of memory";
        return std::nullopt;
    }
    PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase,
                                         nullptr));
    if (!pkey) {
        *err = "the PEM key could not be read: an unencrypted \"EC PRIVATE "
               "KEY\" or \"PRIVATE KEY\" block is required";
        return std::nullopt;
    }
    char group[64] = "";
    size_t glen = 0;
    if (!EVP_PKEY_is_a(pkey.get(), "EC")
        || !EVP_PKEY_get_group_name(pkey.get(), group, sizeof(group), &glen)
        || std::strcmp(group, "prime256v1") != 0) {
        *err = "the PEM key is not an EC P-256 (prime256v1) key, the only "
               "curve ES256 allows";
        return std::nullopt;
    }
    CdpKey k;
    k.alg = CdpAlg::es256;
    k.pkey = std::move(pkey);
    return k;
}

std::optional<CdpKey> load_ed25519(std::string_view b64, const char **err)
{
    auto raw = base64_decode(b64);
    if (!raw || raw->size() != 64) {
        *err = "the key is neither a PEM EC key nor standard base64 of 64 "
               "bytes (an Ed25519 seed followed by its public key)";
        return std::nullopt;
    }
    const auto *bytes = reinterpret_cast<const unsigned char *>(raw->data());
    PkeyPtr pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                              bytes, 32));
    OPENSSL_cleanse(raw->data(), 32);
    if (!pkey) {
        *err = "the Ed25519 seed was refused by OpenSSL";
        return std::nullopt;
    }
    unsigned char pub[32];
    size_t plen = sizeof(pub);
    if (!EVP_PKEY_get_raw_public_key(pkey.get(), pub, &plen) || plen != 32
        || std::memcmp(pub, bytes + 32, 32) != 0) {
        *err = "the last 32 bytes of the Ed25519 key are not the public key "
               "of its first 32 (the seed): the key is corrupt";
        return std::nullopt;
    }
    CdpKey k;
    k.alg = CdpAlg::eddsa;
    k.pkey = std::move(pkey);
    return k;
}

// DER ECDSA-Sig-Value to JOSE's r || s, each left-padded to 32 bytes.
bool der_to_jose(const unsigned char *der, size_t len, unsigned char out[64])
{
    const unsigned char *p = der;
    std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter> sig(
        d2i_ECDSA_SIG(nullptr, &p, long(len)));
    if (!sig) {
        return false;
    }
    const BIGNUM *r = nullptr, *s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    return BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
}

std::optional<std::string> sign(const CdpKey &key, std::string_view input)
{
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    if (!ctx) {
        return std::nullopt;
    }
    // Ed25519 is "pure" EdDSA: no digest is named (RFC 8037 3.1).
    const EVP_MD *md = key.alg == CdpAlg::es256 ? EVP_sha256() : nullptr;
    if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key.pkey.get())
        != 1) {
        return std::nullopt;
    }
    const auto *in = reinterpret_cast<const unsigned char *>(input.data());
    size_t len = 0;
    if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) {
        return std::nullopt;
    }
    std::string sig(len, '\0');
    auto *out = reinterpret_cast<unsigned char *>(sig.data());
    if (EVP_DigestSign(ctx.get(), out, &len, in, input.size()) != 1) {
        return std::nullopt;
    }
    sig.resize(len);
    if (key.alg == CdpAlg::eddsa) {
        return sig;
    }
    unsigned char rs[64];
    if (!der_to_jose(out, len, rs)) {
        return std::nullopt;
    }
    return std::string(reinterpret_cast<char *>(rs), sizeof(rs));
}

}  // namespace

std::string base64url_encode(std::string_view in)
{
    std::string s = base64_encode(in);
    while (!s.empty() && s.back() == '=') {
        s.pop_back();
    }
    for (char &c : s) {
        c = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    return s;
}

std::optional<CdpKey> cdp_key_load(std::string_view key_id,
                                   std::string_view secret, const char **err)
{
    ErrClear clear;
    if (key_id.empty() || key_id.size() > cdp_max_key_id
        || !token_chars(key_id)) {
        *err = "the key id must be 1 to 256 printable ASCII characters "
               "without spaces";
        return std::nullopt;
    }
    secret = trim(secret);
    if (secret.empty() || secret.size() > cdp_max_secret) {
        *err = "the key secret must be 1 to 8192 bytes";
        return std::nullopt;
    }
    auto k = secret.substr(0, 5) == "-----" ? load_pem(secret, err)
                                            : load_ed25519(secret, err);
    if (k) {
        k->key_id = std::string(key_id);
    }
    return k;
}

std::optional<std::string> cdp_jwt(const CdpKey &key, std::string_view method,
                                   std::string_view host,
                                   std::string_view path, int64_t now,
                                   int64_t lifetime, const char **err)
{
    ErrClear clear;
    if (method.empty() || method.size() > 16) {
        *err = "the method must be 1 to 16 upper-case letters";
        return std::nullopt;
    }
    for (char c : method) {
        if (c < 'A' || c > 'Z') {
            *err = "the method must be 1 to 16 upper-case letters";
            return std::nullopt;
        }
    }
    if (host.empty() || host.size() > cdp_max_host || !token_chars(host)
        || host.find('/') != std::string_view::npos) {
        *err = "the host must be 1 to 255 printable ASCII characters without "
               "spaces or '/'";
        return std::nullopt;
    }
    if (path.empty() || path[0] != '/' || path.size() > cdp_max_path
        || !token_chars(path)) {
        *err = "the path must start with '/' and be at most 1024 printable "
               "ASCII characters without spaces";
        return std::nullopt;
    }
    if (lifetime == 0) {
        lifetime = cdp_jwt_default_lifetime;
    }
    // Bounds keep now + lifetime far from int64 overflow and the claims
    // meaningful (NumericDate is non-negative).
    if (lifetime < 1 || lifetime > 3600 || now < 0 || now > (int64_t(1) << 40)) {
        *err = "now must be a unix time and the lifetime 1 to 3600 seconds";
        return std::nullopt;
    }

    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        *err = "no randomness for the JWT nonce (RAND_bytes failed)";
        return std::nullopt;
    }
    static constexpr char hexd[] = "0123456789abcdef";
    std::string nonce;
    for (unsigned char b : rnd) {
        nonce += hexd[b >> 4];
        nonce += hexd[b & 15];
    }

    std::string header = "{";
    json_append_member(header, "alg",
                       key.alg == CdpAlg::es256 ? "ES256" : "EdDSA", true);
    json_append_member(header, "kid", key.key_id);
    json_append_member(header, "typ", "JWT");
    json_append_member(header, "nonce", nonce);
    header += '}';

    std::string uri;
    uri.reserve(method.size() + 1 + host.size() + path.size());
    uri.append(method).append(" ").append(host).append(path);
    std::string payload = "{";
    json_append_member(payload, "sub", key.key_id, true);
    json_append_member(payload, "iss", "cdp");
    payload += ",\"aud\":[\"cdp_service\"],\"nbf\":";
    json_append_uint(payload, uint64_t(now));
    payload += ",\"iat\":";
    json_append_uint(payload, uint64_t(now));
    payload += ",\"exp\":";
    json_append_uint(payload, uint64_t(now + lifetime));
    payload += ",\"uris\":[";
    json_append_string(payload, uri);
    payload += "]}";

    std::string jwt = base64url_encode(header);
    jwt += '.';
    jwt += base64url_encode(payload);
    auto sig = sign(key, jwt);
    if (!sig) {
        *err = "OpenSSL could not sign the JWT";
        return std::nullopt;
    }
    jwt += '.';
    jwt += base64url_encode(*sig);
    return jwt;
}

}  // namespace x402
