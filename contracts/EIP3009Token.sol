// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/*
 * EIP3009Token: the EIP-3009 token of contracts/TestUSDC.sol with its
 * identity (name, symbol, EIP-712 version) left to the derived contract, so
 * that a second stablecoin (TestEURC) behaves exactly like the first. The
 * rules, revert strings and the placement trick are TestUSDC's: runtime
 * code is put with anvil_setCode at the token's real address, no
 * constructor runs, the domain is computed from block.chainid and
 * address(this) at call time, and `minter` (the first storage variable) is
 * set with anvil_setStorageAt. TestUSDC keeps its own copy for now because
 * its committed artifact is pinned by the interop suite.
 */
abstract contract EIP3009Token {
    uint8 public constant decimals = 6;

    /* The token's identity, its EIP-712 domain name and version. */
    function name() public pure virtual returns (string memory);
    function symbol() public pure virtual returns (string memory);
    function version() public pure virtual returns (string memory);

    bytes32 private constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,"
        "address verifyingContract)");
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,"
        "uint256 validAfter,uint256 validBefore,bytes32 nonce)");
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,"
        "uint256 validAfter,uint256 validBefore,bytes32 nonce)");
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH = keccak256(
        "CancelAuthorization(address authorizer,bytes32 nonce)");

    /* secp256k1 n / 2: signatures with a larger s are malleable twins. */
    uint256 private constant HALF_N =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    /* Storage. `minter` must stay the first variable: chain.mjs sets it. */
    address public minter;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => mapping(bytes32 => bool)) private _authorizationStates;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender,
        uint256 value);
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer,
        bytes32 indexed nonce);

    constructor() {
        minter = msg.sender;
    }

    /* ---- EIP-712 ---- */

    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(name())),
            keccak256(bytes(version())), block.chainid, address(this)));
    }

    /* EIP-5267 */
    function eip712Domain() external view returns (bytes1 fields,
        string memory name_, string memory version_, uint256 chainId,
        address verifyingContract, bytes32 salt, uint256[] memory extensions)
    {
        return (hex"0f", name(), version(), block.chainid, address(this),
            bytes32(0), new uint256[](0));
    }

    /* ---- ERC-20 ---- */

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value)
        external returns (bool)
    {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "ERC20: transfer amount exceeds allowance");
        if (allowed != type(uint256).max) {
            allowance[from][msg.sender] = allowed - value;
        }
        _transfer(from, to, value);
        return true;
    }

    function mint(address to, uint256 value) external {
        require(msg.sender == minter && minter != address(0),
            "EIP3009Token: caller is not the minter");
        require(to != address(0), "ERC20: mint to the zero address");
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    /* Test helper: burn the caller's own tokens (drains a payer). */
    function burn(uint256 value) external {
        uint256 bal = balanceOf[msg.sender];
        require(bal >= value, "ERC20: burn amount exceeds balance");
        balanceOf[msg.sender] = bal - value;
        totalSupply -= value;
        emit Transfer(msg.sender, address(0), value);
    }

    /* ---- EIP-3009 ---- */

    function authorizationState(address authorizer, bytes32 nonce)
        external view returns (bool)
    {
        return _authorizationStates[authorizer][nonce];
    }

    function transferWithAuthorization(address from, address to,
        uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        uint8 v, bytes32 r, bytes32 s) external
    {
        _transferWithAuthorization(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from,
            to, value, validAfter, validBefore, nonce,
            abi.encodePacked(r, s, v));
    }

    function transferWithAuthorization(address from, address to,
        uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        bytes memory signature) external
    {
        _transferWithAuthorization(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from,
            to, value, validAfter, validBefore, nonce, signature);
    }

    function receiveWithAuthorization(address from, address to,
        uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        uint8 v, bytes32 r, bytes32 s) external
    {
        require(to == msg.sender, "EIP3009: caller must be the payee");
        _transferWithAuthorization(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from,
            to, value, validAfter, validBefore, nonce,
            abi.encodePacked(r, s, v));
    }

    function receiveWithAuthorization(address from, address to,
        uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        bytes memory signature) external
    {
        require(to == msg.sender, "EIP3009: caller must be the payee");
        _transferWithAuthorization(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from,
            to, value, validAfter, validBefore, nonce, signature);
    }

    function cancelAuthorization(address authorizer, bytes32 nonce,
        uint8 v, bytes32 r, bytes32 s) external
    {
        cancelAuthorization(authorizer, nonce, abi.encodePacked(r, s, v));
    }

    function cancelAuthorization(address authorizer, bytes32 nonce,
        bytes memory signature) public
    {
        require(!_authorizationStates[authorizer][nonce],
            "EIP3009: authorization is used or canceled");
        bytes32 structHash = keccak256(abi.encode(
            CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce));
        _requireValidSignature(authorizer, _digest(structHash), signature);
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    /* ---- internals ---- */

    function _transferWithAuthorization(bytes32 typehash, address from,
        address to, uint256 value, uint256 validAfter, uint256 validBefore,
        bytes32 nonce, bytes memory signature) private
    {
        require(block.timestamp > validAfter,
            "EIP3009: authorization is not yet valid");
        require(block.timestamp < validBefore,
            "EIP3009: authorization is expired");
        require(!_authorizationStates[from][nonce],
            "EIP3009: authorization is used or canceled");
        bytes32 structHash = keccak256(abi.encode(typehash, from, to, value,
            validAfter, validBefore, nonce));
        _requireValidSignature(from, _digest(structHash), signature);
        _authorizationStates[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
        _transfer(from, to, value);
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(),
            structHash));
    }

    /*
     * A 65-byte signature from an account without code is checked with
     * ecrecover, strictly (v 27/28, low s), as FiatToken does. A signer with
     * code is asked through ERC-1271.
     */
    function _requireValidSignature(address signer, bytes32 digest,
        bytes memory signature) private view
    {
        if (signer.code.length == 0) {
            require(signature.length == 65, "EIP3009: invalid signature length");
            bytes32 r;
            bytes32 s;
            uint8 v;
            assembly {
                r := mload(add(signature, 0x20))
                s := mload(add(signature, 0x40))
                v := byte(0, mload(add(signature, 0x60)))
            }
            require(uint256(s) <= HALF_N, "EIP3009: invalid signature 's' value");
            require(v == 27 || v == 28, "EIP3009: invalid signature 'v' value");
            address recovered = ecrecover(digest, v, r, s);
            require(recovered != address(0) && recovered == signer,
                "EIP3009: invalid signature");
            return;
        }
        (bool ok, bytes memory ret) = signer.staticcall(abi.encodeWithSelector(
            ERC1271_MAGIC, digest, signature));
        require(ok && ret.length >= 32 && bytes4(ret) == ERC1271_MAGIC,
            "EIP3009: invalid signature");
    }

    function _transfer(address from, address to, uint256 value) private {
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 bal = balanceOf[from];
        require(bal >= value, "ERC20: transfer amount exceeds balance");
        unchecked {
            balanceOf[from] = bal - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
