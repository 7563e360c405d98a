// End-to-end encryption of crop batches (mirror of server/affectline/crypto.py):
// ECDH P-256 -> HKDF-SHA256(salt from StartSession, info below) -> AES-256-GCM,
// AAD = session id (UTF-8) || seq (u64 big-endian).
const INFO = new TextEncoder().encode("affectline/v1 crop batch key");
const CURVE = { name: "ECDH", namedCurve: "P-256" } as const;

// TS 5.7+ wants ArrayBuffer-backed views for WebCrypto; copying also detaches us from protobuf buffers.
const own = (u: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(u);

export interface KeyPair {
  keys: CryptoKeyPair;
  publicRaw: Uint8Array; // 65 bytes, 0x04 || X || Y
}

export async function newKeyPair(): Promise<KeyPair> {
  // The private key is not extractable: it never leaves WebCrypto.
  const keys = (await crypto.subtle.generateKey(CURVE, false, ["deriveBits"])) as CryptoKeyPair;
  return { keys, publicRaw: new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey)) };
}

export async function deriveBatchKey(kp: KeyPair, serverPublic: Uint8Array, salt: Uint8Array): Promise<CryptoKey> {
  const peer = await crypto.subtle.importKey("raw", own(serverPublic), CURVE, false, []);
  const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: peer }, kp.keys.privateKey, 256);
  const hkdf = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: own(salt), info: INFO },
    hkdf, { name: "AES-GCM", length: 256 }, false, ["encrypt"],
  );
}

export function batchAad(sessionId: string, seq: bigint): Uint8Array<ArrayBuffer> {
  const id = new TextEncoder().encode(sessionId);
  const aad = new Uint8Array(id.length + 8);
  aad.set(id);
  new DataView(aad.buffer).setBigUint64(id.length, seq, false);
  return aad;
}

export async function encryptBatch(key: CryptoKey, sessionId: string, seq: bigint, plaintext: Uint8Array):
    Promise<{ nonce: Uint8Array; ciphertext: Uint8Array }> {
  const nonce = crypto.getRandomValues(new Uint8Array(12)); // random 96-bit nonce per batch
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: batchAad(sessionId, seq), tagLength: 128 }, key, own(plaintext));
  return { nonce, ciphertext: new Uint8Array(ct) }; // ciphertext || 16-byte tag, as AESGCM in Python
}
