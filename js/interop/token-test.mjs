#!/usr/bin/env node
/*
 * Direct checks of contracts/TestUSDC.sol on a fresh local chain: the EIP-712
 * domain, ERC-20 basics, mint restricted to the minter, and every EIP-3009
 * rule, each failure with a revert reason the official facilitator's error
 * mapping (parseEip3009TransferError in @x402/evm) classifies as the
 * matching x402 reason.
 *
 *   node js/interop/token-test.mjs      TAP-like lines; exit 1 on failure
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAddress, parseSignature, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { startChain } from "./chain.mjs";
import { USDC_ADDRESS, artifact, publicClient, stopPid, walletClient } from "./lib.mjs";
import { authorizationTypes, flipByte, highS, v01 } from "./payments.mjs";

let n = 0;
let failed = 0;
function check(ok, what, detail = "") {
  n++;
  if (!ok) failed++;
  console.log(`${ok ? "ok" : "not ok"} ${n} - ${what}${!ok && detail ? `  # ${detail}` : ""}`);
}

/* the facilitator's mapping, restated: reason string -> x402 reason */
function classify(msg) {
  if (/authorization.*(expired|valid before)/i.test(msg)) return "valid_before";
  if (/authorization.*not.*valid/i.test(msg)) return "valid_after";
  if (/authorization.*used/i.test(msg)) return "nonce_already_used";
  if (/transfer.*exceeds.*balance|insufficient.*balance/i.test(msg)) return "insufficient_balance";
  if (/invalid.*signature/i.test(msg)) return "signature";
  return "transaction_failed";
}

async function main() {
  const runDir = mkdtempSync(join(tmpdir(), "x402-token-"));
  const chain = await startChain(runDir, { fund: "1" });
  const abi = artifact("TestUSDC").abi;
  const pc = publicClient(chain.rpcUrl);
  const acct = chain.accounts;
  const payer = privateKeyToAccount(acct.payer.key);
  const relayer = walletClient(chain.rpcUrl, acct.facilitator.key);
  const payTo = getAddress(chain.payTo);
  const read = (functionName, args = []) => pc.readContract({ address: USDC_ADDRESS,
    abi, functionName, args });
  try {
    check(await read("name") === "USDC" && await read("version") === "2"
      && await read("decimals") === 6, "name USDC, version 2, 6 decimals");
    check(await read("DOMAIN_SEPARATOR") === chain.token.domainSeparator,
      "DOMAIN_SEPARATOR is the Base Sepolia USDC domain");
    const d = await read("eip712Domain");
    check(d[1] === "USDC" && d[2] === "2" && d[3] === 84532n
      && getAddress(d[4]) === USDC_ADDRESS, "eip712Domain (EIP-5267)");
    check(await read("balanceOf", [payer.address]) === 1000000n, "payer funded by minting");

    /* mint is the minter's only */
    try {
      await walletClient(chain.rpcUrl, acct.payer.key).simulateContract({
        address: USDC_ADDRESS, abi, functionName: "mint", args: [payer.address, 1n] });
      check(false, "mint by a non-minter reverts");
    } catch (e) {
      check(/not the minter/.test(e.message), "mint by a non-minter reverts");
    }

    const now = BigInt(Math.floor(Date.now() / 1000));
    const sign = async (over = {}, signer = payer) => {
      const auth = { from: payer.address, to: payTo, value: 1000n,
        validAfter: now - 600n, validBefore: now + 300n,
        nonce: toHex(crypto.getRandomValues(new Uint8Array(32))), ...over };
      const sig = await signer.signTypedData({ domain: { name: "USDC", version: "2",
        chainId: 84532, verifyingContract: USDC_ADDRESS }, types: authorizationTypes,
      primaryType: "TransferWithAuthorization", message: auth });
      return { auth, sig };
    };
    const args = ({ auth }, sig) => {
      const p = parseSignature(sig);
      return [auth.from, auth.to, auth.value, auth.validAfter, auth.validBefore, auth.nonce,
        Number(p.v ?? BigInt(p.yParity + 27)), p.r, p.s];
    };
    const argsBytes = ({ auth }, sig) => [auth.from, auth.to, auth.value, auth.validAfter,
      auth.validBefore, auth.nonce, sig];
    const send = async (a, fn = "transferWithAuthorization", wc = relayer) => {
      const hash = await wc.writeContract({ address: USDC_ADDRESS, abi, functionName: fn, args: a });
      return wc.waitForTransactionReceipt({ hash });
    };
    const reverts = async (a, want, what, fn = "transferWithAuthorization", wc = relayer) => {
      try {
        await wc.simulateContract({ address: USDC_ADDRESS, abi, functionName: fn, args: a });
        check(false, what, "did not revert");
      } catch (e) {
        const got = classify(e.shortMessage + " " + e.message);
        check(got === want, what, `classified ${got}: ${e.shortMessage}`);
      }
    };

    /* a valid transfer, (v,r,s) overload */
    const ok1 = await sign();
    const r1 = await send(args(ok1, ok1.sig));
    check(r1.status === "success", "transferWithAuthorization (v,r,s) succeeds");
    check(await read("authorizationState", [payer.address, ok1.auth.nonce]) === true,
      "authorizationState is true after use");
    check(await read("balanceOf", [payTo]) === 1000n, "payTo received the value");
    await reverts(args(ok1, ok1.sig), "nonce_already_used", "reuse reverts: authorization used");

    /* bytes overload */
    const ok2 = await sign();
    check((await send(argsBytes(ok2, ok2.sig))).status === "success",
      "transferWithAuthorization (bytes signature) succeeds");

    const e1 = await sign({ validBefore: now - 1n });
    await reverts(args(e1, e1.sig), "valid_before", "expired reverts: authorization is expired");
    const e2 = await sign({ validAfter: now + 3600n });
    await reverts(args(e2, e2.sig), "valid_after", "future validAfter reverts: not yet valid");
    const e3 = await sign({ value: 10n ** 12n });
    await reverts(args(e3, e3.sig), "insufficient_balance", "too much reverts: exceeds balance");
    const e4 = await sign();
    await reverts(argsBytes(e4, highS(e4.sig)), "signature", "high-s twin reverts: invalid signature");
    await reverts(argsBytes(e4, v01(e4.sig)), "signature", "v 0/1 reverts: invalid signature");
    await reverts(args(e4, flipByte(e4.sig, 40)), "signature", "tampered signature reverts");
    const other = await sign({}, privateKeyToAccount(acct.payer2.key));
    await reverts(args(other, other.sig), "signature", "another signer reverts");
    await reverts(argsBytes(e4, e4.sig.slice(0, 130)), "signature", "64-byte signature reverts");

    /* receiveWithAuthorization: only the payee may submit it */
    const recvTypes = { ReceiveWithAuthorization: authorizationTypes.TransferWithAuthorization };
    const payee = walletClient(chain.rpcUrl, acct.payer2.key);
    const rauth = { from: payer.address, to: payee.account.address, value: 5n,
      validAfter: now - 600n, validBefore: now + 300n, nonce: toHex(new Uint8Array(32).fill(3)) };
    const rsig = await payer.signTypedData({ domain: { name: "USDC", version: "2",
      chainId: 84532, verifyingContract: USDC_ADDRESS }, types: recvTypes,
    primaryType: "ReceiveWithAuthorization", message: rauth });
    const rargs = [rauth.from, rauth.to, rauth.value, rauth.validAfter, rauth.validBefore,
      rauth.nonce, rsig];
    try {
      await relayer.simulateContract({ address: USDC_ADDRESS, abi,
        functionName: "receiveWithAuthorization", args: rargs });
      check(false, "receiveWithAuthorization by another caller reverts");
    } catch (e) {
      check(/caller must be the payee/.test(e.message), "receiveWithAuthorization by another caller reverts");
    }
    check((await send(rargs, "receiveWithAuthorization", payee)).status === "success",
      "receiveWithAuthorization by the payee succeeds");

    /* cancelAuthorization makes a signed authorization unusable */
    const c = await sign();
    const csig = await payer.signTypedData({ domain: { name: "USDC", version: "2",
      chainId: 84532, verifyingContract: USDC_ADDRESS },
    types: { CancelAuthorization: [{ name: "authorizer", type: "address" },
      { name: "nonce", type: "bytes32" }] },
    primaryType: "CancelAuthorization", message: { authorizer: payer.address, nonce: c.auth.nonce } });
    check((await send([payer.address, c.auth.nonce, csig], "cancelAuthorization")).status === "success",
      "cancelAuthorization succeeds");
    await reverts(args(c, c.sig), "nonce_already_used", "a canceled authorization reverts");
  } finally {
    await stopPid(chain.pid);
    rmSync(runDir, { recursive: true, force: true });
  }
  console.log(`1..${n}`);
  if (failed) {
    console.log(`# ${failed} of ${n} failed`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(`token-test: ${e.stack || e.message}`);
  process.exit(2);
});
