// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/*
 * The part of the Multicall3 interface that the official x402 facilitator
 * uses (tryAggregate, for its diagnosis of a failed simulation: balance,
 * name, version, authorizationState in one eth_call) plus aggregate3, which
 * viem's multicall action uses. A fresh anvil has no Multicall3, so
 * chain.mjs places this runtime code at the canonical address
 * 0xcA11bde05977b3631167028862bE2a173976CA11. Written from the published
 * interface, not copied.
 */
contract Multicall3Lite {
    struct Call {
        address target;
        bytes callData;
    }

    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function tryAggregate(bool requireSuccess, Call[] calldata calls)
        public payable returns (Result[] memory returnData)
    {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(
                calls[i].callData);
            if (requireSuccess) {
                require(ok, "Multicall3: call failed");
            }
            returnData[i] = Result(ok, ret);
        }
    }

    function aggregate3(Call3[] calldata calls)
        public payable returns (Result[] memory returnData)
    {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory ret) = calls[i].target.call(
                calls[i].callData);
            require(ok || calls[i].allowFailure, "Multicall3: call failed");
            returnData[i] = Result(ok, ret);
        }
    }

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }

    function getCurrentBlockTimestamp() external view returns (uint256) {
        return block.timestamp;
    }

    function getChainId() external view returns (uint256) {
        return block.chainid;
    }
}
