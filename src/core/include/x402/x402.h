/*
 * x402.h: the C API of the x402 core (src/core). The nginx glue sees nothing
 * else of the core. Every function here is noexcept on the C++ side: no
 * exception crosses this boundary, a failure is a return code.
 *
 * Strings are (data, len) pairs and are not NUL-terminated unless stated.
 * Output buffers are allocated through the caller's allocator (an nginx pool
 * in the module), so the caller frees nothing but the opaque objects
 * (x402_offer_t, x402_payment_t), whose free functions the glue calls from
 * a pool cleanup.
 */

#ifndef X402_X402_H
#define X402_X402_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif


/* Fixed upper bounds on every input. */
#define X402_MAX_HEADER_LEN      16384  /* base64 payment header, bytes */
#define X402_MAX_JSON_DEPTH      16     /* nesting of a decoded payload */
#define X402_MAX_FACILITATOR_LEN 65536  /* facilitator response body */
#define X402_MAX_AMOUNT_DIGITS   78     /* uint256 in decimal */
#define X402_VALID_BEFORE_MARGIN 6      /* seconds, reference facilitator */


typedef struct {
    const char  *data;
    size_t       len;
} x402_str_t;

/* Returns len bytes of storage or NULL; never freed by the core. */
typedef void *(*x402_alloc_pt)(void *ctx, size_t size);

typedef struct {
    x402_alloc_pt  alloc;
    void          *ctx;
} x402_allocator_t;


/* ---- networks and assets (CAIP-2 ids: coinbase/x402
 * specs/x402-specification-v2.md 11.1; default assets:
 * typescript/packages/mechanisms/evm/src/shared/defaultAssets.ts) ---- */

typedef struct {
    const char  *v1_name;        /* "base-sepolia" */
    const char  *caip2;          /* "eip155:84532" */
    uint64_t     chain_id;
    /* default asset (the network's USDC); usdc == NULL: none known */
    const char  *usdc;           /* EIP-55 checksummed address */
    const char  *usdc_name;      /* EIP-712 domain name: "USDC", "USD Coin" */
    const char  *usdc_version;   /* EIP-712 domain version: "2" */
    unsigned     usdc_decimals;  /* 6 */
} x402_network_t;

/*
 * By v1 name ("base") or CAIP-2 id ("eip155:8453"); NULL if unknown.
 * "eip155:<id>" of a chain outside the table is accepted with usdc == NULL
 * (the caller must then require an explicit asset); such entries are kept
 * for the process lifetime, at most 64 of them (then NULL). Networks without
 * a v1 name have v1_name == caip2. The pointer never dangles.
 */
const x402_network_t *x402_network_find(x402_str_t name);


/* ---- addresses and amounts (configuration and variables) ---- */

/*
 * "0x" + 40 hex digits. All-lower or all-upper hex is accepted as is; mixed
 * case must carry a valid EIP-55 checksum. out receives the checksummed form
 * (42 bytes, NUL-terminated: out[42] = '\0').
 * Returns 0, or -1 with *err set to a static message naming the rule broken.
 */
int x402_address_parse(x402_str_t in, char out[43], const char **err);

/*
 * Price to atomic units, exact decimal arithmetic, no floating point.
 *   atomic == 0: display units: "0.001", "$0.001", "1", "1.50"
 *                (more fractional digits than `decimals` is an error);
 *   atomic == 1: an integer of atomic units: "1000".
 * Leading/trailing whitespace is an error. out receives the canonical
 * decimal (no leading zeros), NUL-terminated, at most 78 digits.
 * Returns 1 priced, 0 free (empty, "0", "0.00", "$0"), -1 error (*err set).
 */
int x402_amount_parse(x402_str_t in, unsigned decimals, int atomic,
    char out[X402_MAX_AMOUNT_DIGITS + 1], const char **err);


/* ---- requirements and the 402 ---- */

/* One entry of `accepts`, fully resolved (strings are copied by
 * x402_offer_create, so they may be short-lived). */
typedef struct {
    x402_str_t              scheme;         /* "exact" */
    const x402_network_t   *network;
    x402_str_t              amount;         /* atomic decimal */
    x402_str_t              asset;          /* checksummed */
    x402_str_t              pay_to;         /* checksummed */
    x402_str_t              asset_name;     /* extra.name */
    x402_str_t              asset_version;  /* extra.version */
    unsigned                asset_decimals;
    uint64_t                max_timeout;    /* maxTimeoutSeconds */
    x402_str_t              description;    /* "" allowed */
    x402_str_t              mime_type;      /* "" allowed */
} x402_requirement_t;

/*
 * An offer: the requirements of one location (n >= 1), pre-rendered so that
 * a 402 costs a copy and a URL splice per request. Created at configuration
 * time when nothing depends on variables, else per request.
 * Returns NULL on error (*err set) or allocation failure.
 */
typedef struct x402_offer_s  x402_offer_t;

x402_offer_t *x402_offer_create(const x402_requirement_t *reqs, size_t n,
    const char **err);
/*
 * As x402_offer_create, with PaymentRequired.extensions: `extensions` is the
 * compact JSON object that becomes the value of `extensions` in the v2 402
 * (x402_bazaar_render writes one); len 0: none. At most 8192 bytes, a JSON
 * object within 14 levels (clients echo it in their payment, which the core
 * decodes within X402_MAX_HEADER_LEN and X402_MAX_JSON_DEPTH).
 */
x402_offer_t *x402_offer_create_ext(const x402_requirement_t *reqs, size_t n,
    x402_str_t extensions, const char **err);
void x402_offer_free(x402_offer_t *offer);
size_t x402_offer_count(const x402_offer_t *offer);
const x402_requirement_t *x402_offer_get(const x402_offer_t *offer, size_t i);

/*
 * The 402 for an offer. resource_url: the absolute URL the client asked for
 * (JSON-escaped by the core). error: the `error` string; len 0 means
 * "Payment required" (the v1 body then says "X-PAYMENT header is required").
 *   header: value of PAYMENT-REQUIRED, padded standard base64 of the compact
 *           v2 PaymentRequired JSON;
 *   body:   the v1 PaymentRequirementsResponse JSON (x402Version 1, error,
 *           accepts with v1 field names and v1 network names). accepts
 *           lists only the requirements on networks the legacy `x402`
 *           package knows (its zod enum rejects the whole body otherwise),
 *           so it may be shorter than the offer, even empty.
 * Both are written into ONE allocation (header first), not NUL-terminated.
 * error may hold any bytes (it is JSON-escaped); a URL that is not valid
 * UTF-8 gets U+FFFD for the bad bytes. Cost: one a->alloc and ~200 ns for a
 * one-requirement offer (src/core/bench/offer_bench.cpp).
 * Returns 0, or -1 on allocation failure.
 */
int x402_offer_render(const x402_offer_t *offer, x402_str_t resource_url,
    x402_str_t error, const x402_allocator_t *a, x402_str_t *header,
    x402_str_t *body);


/* ---- payments: decode, match, local verification ---- */

typedef struct x402_payment_s  x402_payment_t;

typedef struct {
    int          ok;            /* 1: every local check passed */
    /*
     * 1: the signature is not a 65-byte ECDSA signature (smart wallet,
     * ERC-6492): everything else passed, and only the facilitator's /verify
     * may accept it. Never serve on local checks alone when set.
     */
    int          signature_unchecked;
    int          version;       /* x402Version of the payload, 1 or 2 */
    /* spec invalidReason, e.g. "invalid_exact_evm_payload_signature";
     * static, NULL when ok */
    const char  *reason;
    /* human detail naming the value and the rule; static, may be NULL */
    const char  *message;
    size_t       requirement;   /* index into the offer of the match */

    /* Filled once decoded and matched; they point into the payment object
     * and live as long as it does. */
    x402_str_t   scheme;
    x402_str_t   network;       /* CAIP-2 */
    x402_str_t   asset;         /* checksummed */
    x402_str_t   payer;         /* authorization.from, checksummed */
    x402_str_t   pay_to;        /* authorization.to, checksummed */
    x402_str_t   value;         /* atomic decimal */
    x402_str_t   nonce;         /* 0x + 64 hex, lower case */
    uint64_t     valid_after;
    uint64_t     valid_before;
    /* hex keccak256 over (chain id, asset, from, nonce): the payment's
     * identity in the store and in $x402_payment_id */
    char         payment_id[65];
} x402_verdict_t;

/*
 * Decode a payment header. version_hint: 2 for PAYMENT-SIGNATURE, 1 for
 * X-PAYMENT (the payload's own x402Version must agree). Size cap, standard
 * base64 alphabet (missing padding tolerated), JSON within
 * X402_MAX_JSON_DEPTH, the shape of the declared version.
 * Returns the payment, or NULL with v->reason/v->message set (or both NULL
 * on allocation failure). The payment must be released by x402_payment_free.
 */
x402_payment_t *x402_payment_decode(x402_str_t header, int version_hint,
    x402_verdict_t *v);
void x402_payment_free(x402_payment_t *p);

/*
 * Match the payment against the offer, then run every local check at time
 * `now` (unix seconds): to == payTo, value == amount, validAfter <= now,
 * validBefore >= now + 6, nonce 32 bytes, signature 65 bytes with v 27/28
 * and low s, EIP-712 TransferWithAuthorization digest recovered to `from`.
 * Fills v. Returns 0 if v->ok, else -1.
 */
int x402_payment_verify(x402_payment_t *p, const x402_offer_t *offer,
    int64_t now, x402_verdict_t *v);


/* ---- facilitator messages (coinbase/x402 specs/x402-specification-v2.md 7)
 * ---- */

/*
 * The body POSTed to <prefix>verify and <prefix>settle (the same bytes to
 * both): {"x402Version":N,"paymentPayload":<the client's payload>,
 * "paymentRequirements":<the matched requirement in the payload's version
 * shape; v1 carries resource_url>}. Call after x402_payment_verify.
 * Returns 0, or -1 on allocation failure or bad arguments (version not 1 or
 * 2, requirement out of range).
 */
int x402_facilitator_request(const x402_payment_t *p,
    const x402_offer_t *offer, size_t requirement, x402_str_t resource_url,
    const x402_allocator_t *a, x402_str_t *body);

#define X402_FAC_OK       0   /* isValid / success true */
#define X402_FAC_REFUSED  1   /* isValid / success false: a 402 */
#define X402_FAC_BROKEN   2   /* malformed, unexpected status: a 502 */

typedef struct {
    int          outcome;       /* X402_FAC_* */
    x402_str_t   reason;        /* invalidReason / errorReason, or why broken */
    x402_str_t   message;       /* invalidMessage / errorMessage */
    x402_str_t   payer;
    x402_str_t   transaction;   /* settle only */
    x402_str_t   network;       /* settle only */
    /* settle only: base64 of the compact settle JSON, the value of
     * PAYMENT-RESPONSE / X-PAYMENT-RESPONSE (also on success false).
     * len 0 when the answer carried no settle object (a Go-style
     * 500 {"error"} refusal, or X402_FAC_BROKEN): use
     * x402_settle_failure_header then. */
    x402_str_t   response_header;
} x402_facilitator_result_t;

/* Parse a /verify or /settle answer (HTTP status and body, as the coinbase/x402
 * e2e facilitators answer: 200 with isValid false, non-200 with an error body,
 * garbage). Strings are allocated with a. Returns the outcome, or -1 on
 * allocation failure. */
int x402_facilitator_parse_verify(int status, x402_str_t body,
    const x402_allocator_t *a, x402_facilitator_result_t *out);
int x402_facilitator_parse_settle(int status, x402_str_t body,
    const x402_allocator_t *a, x402_facilitator_result_t *out);

/* ---- what the chain says (issue 14) ---- */

/*
 * From a /settle body: the JSON-RPC request of an eth_call of the asset's
 * EIP-3009 authorizationState(from, nonce) at "latest" (*request), and the
 * CAIP-2 id of the network to ask (*network, e.g. "eip155:84532"). Returns
 * 0, or -1 if the body lacks the authorization, asset or a known network
 * (or on allocation failure).
 */
int x402_authorization_state_request(x402_str_t settle_body,
    const x402_allocator_t *a, x402_str_t *network, x402_str_t *request);

#define X402_AUTH_UNUSED  0   /* not used: the settlement did not happen */
#define X402_AUTH_USED    1   /* used: settled (or cancelled) */
#define X402_AUTH_ERROR   2   /* no usable answer */

/* The JSON-RPC answer (HTTP status and body); *why (allocated with a, may
 * be NULL) says what was wrong for X402_AUTH_ERROR. */
int x402_authorization_state_parse(int status, x402_str_t body,
    const x402_allocator_t *a, x402_str_t *why);


/* base64 of compact {"success":false,"errorReason":reason,"transaction":"",
 * "network":network,"payer":payer} for a refused settlement that had no
 * facilitator body to echo (response_header.len == 0 above). payer is
 * omitted when empty. */
int x402_settle_failure_header(x402_str_t reason, x402_str_t network,
    x402_str_t payer, const x402_allocator_t *a, x402_str_t *header);

/* The labels metrics count a settlement under, from a /settle request body
 * of x402_facilitator_request (e.g. one queued for a background retry):
 * paymentRequirements' network as CAIP-2, asset, payTo and amount (v1:
 * maxAmountRequired), each allocated with a; len 0 when absent or not
 * parseable. Returns 0, or -1 on allocation failure. */
typedef struct {
    x402_str_t  network;
    x402_str_t  asset;
    x402_str_t  pay_to;
    x402_str_t  amount;
} x402_settle_labels_t;

int x402_settle_labels(x402_str_t settle_body, const x402_allocator_t *a,
    x402_settle_labels_t *out);


/* ---- bazaar discovery extension (coinbase/x402 specs/extensions/bazaar.md) ---- */

/*
 * What a location declares for discovery; every JSON member is text the
 * operator wrote (len 0: absent), each at most 8192 bytes and 8 levels:
 *   method:         GET, HEAD, DELETE (query form) or POST, PUT, PATCH
 *                   (body form), the request method the 402 describes;
 *   query_params:   query form: JSON object, example query parameters;
 *   body_type:      body form: "json", "form-data" or "text";
 *   body:           body form: JSON object or string, example body;
 *   input_schema:   JSON object: JSON Schema of the query parameters (its
 *                   members are merged into {"type":"object"}) or of the
 *                   body; absent: {"properties":{}};
 *   output_example: JSON object, example answer (output type "json");
 *   output_schema:  JSON object merged into the example's schema
 *                   {"type":"object"}; needs output_example.
 */
typedef struct {
    x402_str_t  method;
    x402_str_t  query_params;
    x402_str_t  body_type;
    x402_str_t  body;
    x402_str_t  input_schema;
    x402_str_t  output_example;
    x402_str_t  output_schema;
} x402_bazaar_t;

/*
 * out: the compact JSON {"bazaar":{"info":...,"schema":...}} that
 * x402_offer_create_ext takes as `extensions`, built as the official
 * @x402/extensions declareDiscoveryExtension + bazaarResourceServerExtension
 * build it for that method (src/core/bazaar.hpp). Allocated with a, at most
 * 8192 bytes. Returns 0, or -1 with *err naming the rule broken (static;
 * "out of memory" on allocation failure).
 */
int x402_bazaar_render(const x402_bazaar_t *b, const x402_allocator_t *a,
    x402_str_t *out, const char **err);


/* ---- what a facilitator supports: GET /supported (x402 v2 spec 7.3) ---- */

/*
 * A parsed SupportedResponse: kinds [{x402Version, scheme, network, extra?}],
 * extensions [names], signers {pattern: [addresses]}. Bounds and the rules
 * are in src/core/supported.hpp (at most 256 kinds, extra at most 4096 bytes
 * of compact JSON, ...). Parsed by each worker from the answer bytes (the
 * glue keeps those bytes, not this object, in shared memory).
 */
typedef struct x402_supported_s  x402_supported_t;

/*
 * status: the HTTP status of the answer (only 200 is usable); body: its
 * bytes. Returns the object, or NULL with *err (allocated with a) saying
 * why, naming the offending member ("facilitator /supported: kinds[3].network
 * is not 1..128 printable characters"); err->len == 0 on allocation failure.
 * Release with x402_supported_free.
 */
x402_supported_t *x402_supported_parse(int status, x402_str_t body,
    const x402_allocator_t *a, x402_str_t *err);
void x402_supported_free(x402_supported_t *s);
size_t x402_supported_count(const x402_supported_t *s);

/*
 * Is (version, scheme, network) a kind of s? Exact equality of all three, as
 * the official resource server's getSupportedKind. Returns 1 and sets *extra
 * to the kind's `extra` as compact JSON ("{...}", len 0 when the kind has
 * none; it lives as long as s), or 0 when not supported.
 */
int x402_supported_find(const x402_supported_t *s, int version,
    x402_str_t scheme, x402_str_t network, x402_str_t *extra);

/* 1 if the facilitator lists the extension name (e.g. "bazaar"), else 0. */
int x402_supported_has_extension(const x402_supported_t *s, x402_str_t name);

/*
 * An offer's requirement against what its facilitator supports: returns 1
 * when the v2 kind (2, scheme, CAIP-2 network) is listed, else 0; *v1 (may
 * be NULL) is set to 1 when the requirement's network has a v1 name and the
 * v1 kind (1, scheme, v1 name) is listed too (else 0: v1 payments for it
 * cannot be settled there).
 */
int x402_supported_requirement(const x402_supported_t *s,
    const x402_requirement_t *r, int *v1);


/* ---- Coinbase Developer Platform (CDP) facilitator authentication ---- */

/*
 * Coinbase's hosted facilitator (https://api.cdp.coinbase.com/platform/v2/x402)
 * wants `Authorization: Bearer <JWT>` on every /verify, /settle (POST) and
 * /supported (GET), signed by a CDP API key, as the official CDP SDKs build
 * it (src/core/cdp_jwt.hpp cites them): header {alg, kid, typ "JWT", nonce
 * 32 hex}, claims {sub key id, iss "cdp", aud ["cdp_service"], nbf, iat, exp
 * = nbf + 120 s, uris ["<METHOD> <host><path>"]}.
 */
typedef struct x402_cdp_key_s  x402_cdp_key_t;

/*
 * Configuration time. key_id: the CDP API key id ("organizations/…/apiKeys/…"
 * or a UUID; 1-256 printable ASCII, no spaces). secret: the key secret as
 * CDP hands it out, surrounding whitespace ignored (it is usually read from
 * a file):
 *   a PEM EC P-256 private key, SEC1 "EC PRIVATE KEY" or PKCS#8
 *   "PRIVATE KEY", unencrypted                              -> ES256;
 *   standard base64 of 64 bytes, Ed25519 seed || public key -> EdDSA.
 * Returns the key, or NULL with *err set to a static message naming the
 * rule broken (NULL err too on allocation failure: "out of memory").
 * Release with x402_cdp_key_free (a configuration pool cleanup).
 */
x402_cdp_key_t *x402_cdp_key_load(x402_str_t key_id, x402_str_t secret,
    const char **err);
void x402_cdp_key_free(x402_cdp_key_t *key);
/* "ES256" or "EdDSA" (static), for logs. */
const char *x402_cdp_key_alg(const x402_cdp_key_t *key);

/*
 * Per facilitator call (no I/O; one ECDSA or Ed25519 signature, tens of
 * microseconds). method: "POST" or "GET" (upper-case letters); host: the
 * facilitator's host as in its URL, with ":port" if not the default
 * ("api.cdp.coinbase.com"); path: the full request path
 * ("/platform/v2/x402/verify"); now: unix time in seconds; lifetime:
 * seconds until exp, 0 for the SDKs' 120 (1..3600 otherwise).
 * out receives "Bearer <JWT>", the whole Authorization header value,
 * allocated with a (not NUL-terminated).
 * Returns 0, or -1 with *err set (bad argument, RAND_bytes or signing
 * failure, allocation failure).
 */
int x402_cdp_authorization(const x402_cdp_key_t *key, x402_str_t method,
    x402_str_t host, x402_str_t path, int64_t now, int64_t lifetime,
    const x402_allocator_t *a, x402_str_t *out, const char **err);


/* ---- utilities shared with the glue ---- */

/* Padded standard base64. Returns 0, -1 on allocation failure. */
int x402_base64_encode(x402_str_t in, const x402_allocator_t *a,
    x402_str_t *out);

/* keccak256(in) into out[32]. */
void x402_keccak256(const void *in, size_t len, unsigned char out[32]);


#ifdef __cplusplus
}
#endif

#endif /* X402_X402_H */
