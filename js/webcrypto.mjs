/*
 * Node 18 (Debian 12's nodejs) has Web Crypto only as require("node:crypto")
 * .webcrypto; the global `crypto` that @x402/evm and x402 call for nonces
 * ("Crypto API not available") arrives in Node 19, or in 18 behind
 * --experimental-global-webcrypto. Every entry script imports this module
 * first, so the official packages run unchanged on Node 18 and however the
 * script is started (tests, the demo, by hand). On Node >= 19 it does nothing.
 */
import { webcrypto } from "node:crypto";

if (typeof globalThis.crypto === "undefined") {
  Object.defineProperty(globalThis, "crypto", {
    value: webcrypto, writable: true, configurable: true, enumerable: false,
  });
}
