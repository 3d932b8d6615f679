// face-api's own FaceExpressionNet on raw RGB images: the reference for fer/learning/models/faceexpr.py.
//
// Not run by CI; called by benchmarks/make_pretrained_reference.py (see its docstring for the
// environment). CommonJS on purpose: face-api's ESM bundles import @tensorflow/tfjs by paths
// that Node's ESM loader rejects, and its default Node bundle needs @tensorflow/tfjs-node, whose
// install downloads a native library. The `node-wasm` bundle only requires the pure-JS
// @tensorflow/tfjs (+ the wasm backend package, not used): we run on the pure-JS `cpu` backend.
//
// usage: node pretrained_reference_faceapi.cjs WEIGHTS_DIR IMAGES.u8 N OUT.json
//   WEIGHTS_DIR  folder holding face_expression_model-weights_manifest.json + .bin
//   IMAGES.u8    N × 112 × 112 × 3 uint8 RGB, row-major
//   OUT.json     {"labels": [...7], "probs": [[...7] × N], "versions": {...}}
'use strict';

const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const SIZE = 112;

async function main() {
  const [weightsDir, imagesPath, nArg, outPath] = process.argv.slice(2);
  const n = Number(nArg);
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceExpressionNet.loadFromDisk(weightsDir);
  const bytes = fs.readFileSync(imagesPath);
  if (bytes.length !== n * SIZE * SIZE * 3) throw new Error(`expected ${n} images of ${SIZE}x${SIZE}x3`);
  const probs = [];
  for (let i = 0; i < n; i += 1) {
    const pixels = bytes.subarray(i * SIZE * SIZE * 3, (i + 1) * SIZE * SIZE * 3);
    const image = tf.tensor3d(Int32Array.from(pixels), [SIZE, SIZE, 3], 'int32');
    const result = await faceapi.nets.faceExpressionNet.predictExpressions(image);
    probs.push(faceapi.FACE_EXPRESSION_LABELS.map((label) => result[label]));
    image.dispose();
  }
  const versions = { node: process.version, tfjs: tf.version.tfjs, faceapi: faceapi.version, backend: tf.getBackend() };
  fs.writeFileSync(outPath, JSON.stringify({ labels: faceapi.FACE_EXPRESSION_LABELS, probs, versions }));
}

main().catch((err) => { console.error(err); process.exit(1); });
