// Native x402 "exact" EVM payment signer for bench/run.sh: one distinct
// EIP-3009 TransferWithAuthorization per output line, shaped byte for byte
// like js/sign-payment.mjs (viem) so the bench's payments are the official
// clients' payments, but fast enough that signing never limits the bench
// (libsecp256k1's RFC 6979 signing, the core's Keccak and EIP-712 digest).
//
//   x402_bench_sign --payment-required B64 [--count N] [--key HEX]
//                   [--now T] [--nonce HEX] [--threads K]
//   x402_bench_sign --recover-bench N     ns of CPU per bare
//                                         secp256k1_ecdsa_recover
//
// The requirement is accepts[0] of the PAYMENT-REQUIRED header; the payload
// is {"x402Version":2,"payload":{"authorization":{...},"signature":"0x.."},
// "resource":{...},"accepted":{...}} with resource and accepted copied in
// their received key order, as sign-payment.mjs does. validAfter is now-600,
// validBefore now+maxTimeoutSeconds. Nonces: --nonce (count 1) or
// keccak256(16 random bytes || index), distinct within and across runs.
#include <jansson.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "address.hpp"
#include "base64.hpp"
#include "eip712.hpp"
#include "keccak.hpp"

namespace {

// Anvil's account #0, as sign-payment.mjs uses by default.
constexpr const char *anvil0 =
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

[[noreturn]] void die(const std::string &msg)
{
    std::fprintf(stderr, "x402_bench_sign: %s\n", msg.c_str());
    std::exit(2);
}

struct JsonDel {
    void operator()(json_t *j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonDel>;

std::string dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                JSON_ENCODE_ANY);
    if (s == nullptr) {
        die("json_dumps failed");
    }
    std::string r(s);
    std::free(s);
    return r;
}

std::string str_field(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    if (v == nullptr) {
        die(std::string("requirement has no string '") + k + "'");
    }
    return v;
}

std::string hex(const uint8_t *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    std::string r = "0x";
    for (size_t i = 0; i < n; i++) {
        r += d[p[i] >> 4];
        r += d[p[i] & 15];
    }
    return r;
}

uint64_t chain_id_of(const std::string &network)
{
    if (network.rfind("eip155:", 0) != 0) {
        die("network '" + network + "' is not eip155:<chain id>");
    }
    return std::strtoull(network.c_str() + 7, nullptr, 10);
}

x402::Address address(const std::string &s)
{
    auto a = x402::address_from_hex(s);
    if (!a) {
        die("bad address '" + s + "'");
    }
    return *a;
}

x402::U256 u256(const std::string &s)
{
    auto v = x402::u256_from_decimal(s);
    if (!v) {
        die("bad uint256 '" + s + "'");
    }
    return *v;
}

struct Job {
    x402::Hash32 domain_sep;
    uint8_t key[32];
    std::string from, to, value, valid_after, valid_before;
    x402::TransferAuthorization auth;
    std::string tail;  // "},"resource":...,"accepted":...}" after the signature
};

std::string sign_one(const secp256k1_context *ctx, const Job &job,
                     const x402::Hash32 &nonce)
{
    x402::TransferAuthorization a = job.auth;
    a.nonce = nonce;
    x402::Hash32 digest = x402::typed_data_digest(job.domain_sep,
                                                  x402::struct_hash(a));
    secp256k1_ecdsa_recoverable_signature sig;
    if (!secp256k1_ecdsa_sign_recoverable(ctx, &sig, digest.data(), job.key,
                                          nullptr, nullptr)) {
        die("signing failed");
    }
    uint8_t out[65];
    int recid = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, out, &recid,
                                                            &sig);
    out[64] = static_cast<uint8_t>(27 + recid);
    std::string json;
    json.reserve(1024);
    json += R"({"x402Version":2,"payload":{"authorization":{"from":")";
    json += job.from;
    json += R"(","to":")";
    json += job.to;
    json += R"(","value":")";
    json += job.value;
    json += R"(","validAfter":")";
    json += job.valid_after;
    json += R"(","validBefore":")";
    json += job.valid_before;
    json += R"(","nonce":")";
    json += hex(nonce.data(), 32);
    json += R"("},"signature":")";
    json += hex(out, 65);
    json += "\"";
    json += job.tail;
    return x402::base64_encode(json);
}

long recover_bench(long n)
{
    secp256k1_context *ctx = secp256k1_context_create(
        SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY);
    uint8_t key[32], msg[32];
    x402::hex_to_bytes(anvil0, key, 32);
    std::memset(msg, 0x5a, sizeof msg);
    secp256k1_ecdsa_recoverable_signature sig;
    if (!secp256k1_ecdsa_sign_recoverable(ctx, &sig, msg, key, nullptr,
                                          nullptr)) {
        die("signing failed");
    }
    timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    unsigned sink = 0;
    for (long i = 0; i < n; i++) {
        secp256k1_pubkey pk;
        msg[0] = static_cast<uint8_t>(i);  // a fresh recovery each time
        sink += static_cast<unsigned>(
            secp256k1_ecdsa_recover(ctx, &pk, &sig, msg));
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    secp256k1_context_destroy(ctx);
    if (sink != static_cast<unsigned>(n)) {
        die("recovery failed");
    }
    return ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec) /
           n;
}

}  // namespace

int main(int argc, char **argv)
{
    std::string pr_b64, key_hex = anvil0, nonce_hex;
    long count = 1, threads = 2;
    long long now = static_cast<long long>(std::time(nullptr));
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) {
            die(a + " needs a value");
        }
        std::string v = argv[++i];
        if (a == "--payment-required") {
            pr_b64 = v;
        } else if (a == "--count") {
            count = std::strtol(v.c_str(), nullptr, 10);
        } else if (a == "--key") {
            key_hex = v.rfind("0x", 0) == 0 ? v.substr(2) : v;
        } else if (a == "--now") {
            now = std::strtoll(v.c_str(), nullptr, 10);
        } else if (a == "--nonce") {
            nonce_hex = v.rfind("0x", 0) == 0 ? v.substr(2) : v;
        } else if (a == "--threads") {
            threads = std::strtol(v.c_str(), nullptr, 10);
        } else if (a == "--recover-bench") {
            long n = std::strtol(v.c_str(), nullptr, 10);
            if (n < 1 || n > 10000000) {
                die("--recover-bench out of range");
            }
            std::printf("%ld\n", recover_bench(n));
            return 0;
        } else {
            die("unknown option " + a);
        }
    }
    if (count < 1 || count > 10000000 || threads < 1 || threads > 64) {
        die("--count or --threads out of range");
    }
    if (!nonce_hex.empty() && count != 1) {
        die("--nonce with --count > 1 would repeat the nonce");
    }
    auto pr_json = x402::base64_decode(pr_b64);
    if (!pr_json) {
        die("--payment-required: not base64");
    }
    json_error_t err;
    Json pr(json_loadb(pr_json->data(), pr_json->size(), 0, &err));
    if (!pr) {
        die(std::string("--payment-required: ") + err.text);
    }
    const json_t *req = json_array_get(json_object_get(pr.get(), "accepts"), 0);
    const json_t *resource = json_object_get(pr.get(), "resource");
    if (!json_is_object(req)) {
        die("--payment-required has no accepts[0]");
    }
    const json_t *extra = json_object_get(req, "extra");

    Job job;
    if (!x402::hex_to_bytes(key_hex, job.key, 32)) {
        die("--key: 32 bytes of hex");
    }
    secp256k1_context *ctx = secp256k1_context_create(
        SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY);
    secp256k1_pubkey pub;
    if (!secp256k1_ec_pubkey_create(ctx, &pub, job.key)) {
        die("--key: not a private key");
    }
    uint8_t pub65[65];
    size_t publen = sizeof pub65;
    secp256k1_ec_pubkey_serialize(ctx, pub65, &publen, &pub,
                                  SECP256K1_EC_UNCOMPRESSED);
    x402::Hash32 ph = x402::keccak256(pub65 + 1, 64);
    job.from = *x402::checksum_address(hex(ph.data() + 12, 20));
    auto to = x402::checksum_address(str_field(req, "payTo"));
    if (!to) {
        die("bad payTo");
    }
    job.to = *to;
    job.value = str_field(req, "amount");
    long long max_timeout =
        json_integer_value(json_object_get(req, "maxTimeoutSeconds"));
    job.valid_after = std::to_string(now - 600);
    job.valid_before = std::to_string(now + max_timeout);
    job.auth.from = address(job.from);
    job.auth.to = address(job.to);
    job.auth.value = u256(job.value);
    job.auth.valid_after = u256(job.valid_after);
    job.auth.valid_before = u256(job.valid_before);
    job.domain_sep = x402::domain_separator(
        str_field(extra, "name"), str_field(extra, "version"),
        chain_id_of(str_field(req, "network")),
        address(str_field(req, "asset")));
    job.tail = "}";
    if (resource != nullptr) {
        job.tail += ",\"resource\":" + dump(resource);
    }
    job.tail += ",\"accepted\":" + dump(req) + "}";

    uint8_t seed[16];
    if (getrandom(seed, sizeof seed, 0) != sizeof seed) {
        die("getrandom failed");
    }
    std::vector<std::string> out(static_cast<size_t>(count));
    auto work = [&](long first, long step) {
        for (long i = first; i < count; i += step) {
            x402::Hash32 nonce;
            if (!nonce_hex.empty()) {
                if (!x402::hex_to_bytes(nonce_hex, nonce.data(), 32)) {
                    die("--nonce: 32 bytes of hex");
                }
            } else {
                uint8_t in[24];
                std::memcpy(in, seed, 16);
                for (int b = 0; b < 8; b++) {
                    in[16 + b] = static_cast<uint8_t>(
                        static_cast<unsigned long>(i) >> (8 * b));
                }
                nonce = x402::keccak256(in, sizeof in);
            }
            out[static_cast<size_t>(i)] = sign_one(ctx, job, nonce);
        }
    };
    // secp256k1 contexts are safe to share for signing once created.
    std::vector<std::thread> pool;
    for (long t = 1; t < threads; t++) {
        pool.emplace_back(work, t, threads);
    }
    work(0, threads);
    for (auto &t : pool) {
        t.join();
    }
    secp256k1_context_destroy(ctx);
    for (const auto &h : out) {
        std::fwrite(h.data(), 1, h.size(), stdout);
        std::fputc('\n', stdout);
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
}
