#!/usr/bin/env node
/*
 * Self-check of the several-options scaffolding (issue 12), without nginx:
 * chain A (Base Sepolia's id 84532) with TestUSDC and TestEURC, chain B (a
 * second anvil, id 31338) with TestUSDC. On each (chain, token) an
 * EIP-3009 TransferWithAuthorization signed by the payer under that
 * token's domain is submitted by the facilitator account, and balances move
 * by exactly the value on that token of that chain and nowhere else. The
 * same signature replayed on another token or chain reverts (the domain
 * binds name, version, chain id and contract). Then the official stack:
 * for each pair the official v2 client (@x402/core x402Client + @x402/evm
 * exact) signs a payment for a requirement naming that token, and the
 * official facilitator (facilitator.mjs buildFacilitator for that chain)
 * verifies and settles it: balances move by exactly the amount there.
 *
 *   node js/interop/several-check.mjs [--keep]   TAP-like; exit 1 on failure
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAddress, parseSignature, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { x402Client } from "@x402/core/client";
import { toClientEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { startChain } from "./chain.mjs";
import { buildFacilitator } from "./facilitator.mjs";
import { CHAIN_ID, SECOND_CHAIN_ID, TOKENS, artifact, parseArgs, publicClient,
  stopPid, walletClient } from "./lib.mjs";
import { authorizationTypes } from "./payments.mjs";

let n = 0;
let failed = 0;
function check(ok, what, detail = "") {
  n++;
  if (!ok) failed++;
  console.log(`${ok ? "ok" : "not ok"} ${n} - ${what}${!ok && detail ? `  # ${detail}` : ""}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["keep"]);
  const dirA = mkdtempSync(join(tmpdir(), "x402-chainA-"));
  const dirB = mkdtempSync(join(tmpdir(), "x402-chainB-"));
  const t0 = Date.now();
  const [a, b] = await Promise.all([
    startChain(dirA, { fund: "1", tokens: ["usdc", "eurc"] }),
    startChain(dirB, { fund: "1", chainId: SECOND_CHAIN_ID, tokens: ["usdc"] }),
  ]);
  console.log(`# two chains up in ${Date.now() - t0} ms`);
  const pairs = [[a, "usdc"], [a, "eurc"], [b, "usdc"]];
  try {
    check(a.chainId === CHAIN_ID && b.chainId === SECOND_CHAIN_ID
      && a.network === "eip155:84532" && b.network === "eip155:31338"
      && b.networkV1 === null, "chain ids and networks in chain.json");
    check(a.tokens.eurc?.name === "EURC" && a.tokens.eurc.version === "2"
      && a.tokens.usdc.domainSeparator !== a.tokens.eurc.domainSeparator
      && a.tokens.usdc.domainSeparator !== b.tokens.usdc.domainSeparator,
    "each (chain, token) has its own EIP-712 domain");

    const payer = privateKeyToAccount(a.accounts.payer.key);
    const payTo = getAddress(a.payTo);
    const balance = (chain, key, who) => publicClient(chain.rpcUrl, chain.chainId)
      .readContract({ address: TOKENS[key].address, abi: artifact(TOKENS[key].artifact).abi,
        functionName: "balanceOf", args: [who] });
    const snapshot = async () => Promise.all(pairs.map(async ([c, k]) => [
      await balance(c, k, payer.address), await balance(c, k, payTo)]));
    const now = BigInt(Math.floor(Date.now() / 1000));
    const sign = async (chain, key, value) => {
      const tok = TOKENS[key];
      const auth = { from: payer.address, to: payTo, value, validAfter: now - 600n,
        validBefore: now + 300n, nonce: toHex(crypto.getRandomValues(new Uint8Array(32))) };
      const sig = await payer.signTypedData({ domain: { name: tok.name, version: tok.version,
        chainId: chain.chainId, verifyingContract: tok.address }, types: authorizationTypes,
      primaryType: "TransferWithAuthorization", message: auth });
      const p = parseSignature(sig);
      return [auth.from, auth.to, auth.value, auth.validAfter, auth.validBefore, auth.nonce,
        Number(p.v ?? BigInt(p.yParity + 27)), p.r, p.s];
    };
    const submit = async (chain, key, callArgs) => {
      const wc = walletClient(chain.rpcUrl, chain.accounts.facilitator.key, chain.chainId);
      const tok = TOKENS[key];
      const hash = await wc.writeContract({ address: tok.address, abi: artifact(tok.artifact).abi,
        functionName: "transferWithAuthorization", args: callArgs });
      return wc.waitForTransactionReceipt({ hash });
    };
    const reverts = async (chain, key, callArgs) => {
      const wc = walletClient(chain.rpcUrl, chain.accounts.facilitator.key, chain.chainId);
      const tok = TOKENS[key];
      try {
        await wc.simulateContract({ address: tok.address, abi: artifact(tok.artifact).abi,
          functionName: "transferWithAuthorization", args: callArgs });
        return "did not revert";
      } catch (e) {
        return /invalid signature/i.test(e.shortMessage + e.message) ? "" : e.shortMessage;
      }
    };

    for (const [i, [chain, key]] of pairs.entries()) {
      const value = BigInt(1000 * (i + 1));
      const what = `${TOKENS[key].name} on ${chain.network}`;
      const before = await snapshot();
      const callArgs = await sign(chain, key, value);
      const receipt = await submit(chain, key, callArgs);
      check(receipt.status === "success", `${what}: transferWithAuthorization succeeds`);
      const after = await snapshot();
      const moved = pairs.map((_, j) => [after[j][0] - before[j][0], after[j][1] - before[j][1]]);
      const want = pairs.map((_, j) => (j === i ? [-value, value] : [0n, 0n]));
      check(JSON.stringify(moved, (_, v) => (typeof v === "bigint" ? String(v) : v))
        === JSON.stringify(want, (_, v) => (typeof v === "bigint" ? String(v) : v)),
      `${what}: balances move by exactly ${value} there and nowhere else`,
      JSON.stringify(moved, (_, v) => String(v)));
      /* The same authorization on every other (chain, token) is refused. */
      for (const [chain2, key2] of pairs) {
        if (chain2 === chain && key2 === key) continue;
        const r = await reverts(chain2, key2, callArgs);
        check(r === "", `${what} signature replayed on ${TOKENS[key2].name} of ` +
          `${chain2.network} reverts: invalid signature`, r);
      }
    }

    /* The official client and facilitator, per (chain, token). */
    const client = new x402Client();
    client.register("eip155:*", new ExactEvmScheme(toClientEvmSigner(payer)));
    /* EURC and a chain outside the tables are not @x402/evm default assets. */
    client.setSpendControls(false);
    for (const [i, [chain, key]] of pairs.entries()) {
      const tok = TOKENS[key];
      const what = `official client + facilitator, ${tok.name} on ${chain.network}`;
      const req = { scheme: "exact", network: chain.network, amount: String(10000 * (i + 1)),
        asset: tok.address, payTo, maxTimeoutSeconds: 300,
        extra: { name: tok.name, version: tok.version } };
      const pr = { x402Version: 2, resource: { url: "http://127.0.0.1/several",
        description: "", mimeType: "" }, accepts: [req] };
      const before = await snapshot();
      try {
        const payload = await client.createPaymentPayload(pr);
        const { facilitator } = buildFacilitator(chain.rpcUrl, chain.accounts.facilitator.key,
          chain.chainId);
        const v = await facilitator.verify(payload, req);
        check(v.isValid === true, `${what}: verify`, JSON.stringify(v));
        const st = await facilitator.settle(payload, req);
        check(st.success === true && st.network === chain.network, `${what}: settle`,
          JSON.stringify(st));
      } catch (e) {
        check(false, `${what}: verify and settle`, e.message);
      }
      const after = await snapshot();
      const moved = pairs.map((_, j) => String(after[j][1] - before[j][1]));
      const want = pairs.map((_, j) => (j === i ? req.amount : "0"));
      check(JSON.stringify(moved) === JSON.stringify(want),
        `${what}: payTo received exactly ${req.amount} there only`, JSON.stringify(moved));
    }
  } finally {
    await Promise.all([stopPid(a.pid), stopPid(b.pid)]);
    if (!args.keep) {
      rmSync(dirA, { recursive: true, force: true });
      rmSync(dirB, { recursive: true, force: true });
    }
  }
  console.log(`1..${n}`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`several-check.mjs: ${e.stack || e.message}`);
  process.exit(1);
});
