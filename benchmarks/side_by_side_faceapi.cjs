// face-api's own expression pipelines, one image at a time: the peer of bench_side_by_side.py.
//
// Not run by CI. Needs face-api and TensorFlow.js from npm, outside the repo (see
// bench_side_by_side.py's docstring). CommonJS and the `node-wasm` bundle for the reasons given
// in pretrained_reference_faceapi.cjs (no native tfjs-node download); the backend is TF.js's
// pure-JS `cpu` (default) or `wasm`.
//
// usage: node side_by_side_faceapi.cjs MODEL_DIR BACKEND
//   MODEL_DIR  face-api's `model/` folder (SSD-MobileNet v1, 68 landmarks, FaceExpressionNet)
//   BACKEND    cpu | wasm
// Then JSON lines on stdin: {"rgb": FILE, "width": W, "height": H, "variants": [...]}, FILE
// holding H x W x 3 uint8 RGB. Variants, each with face-api's documented defaults
// (SsdMobilenetv1Options: minConfidence 0.5, maxResults 100):
//   landmarks   detectAllFaces -> withFaceLandmarks -> withFaceExpressions (aligned face box)
//   box         detectAllFaces -> withFaceExpressions (the detector's box)
//   whole       faceExpressionNet.predictExpressions on the whole image (one face crop)
// Answer per line: {"<variant>": {"ms": ..., "faces": [{"box": [x, y, w, h], "expressions":
// {label: p}}]}}. The first line out is {"ready": true, "versions": {...}} once models load.
'use strict';

const fs = require('fs');
const readline = require('readline');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

function faceOut(result) {
  const box = result.detection.box;
  return { box: [box.x, box.y, box.width, box.height], expressions: { ...result.expressions } };
}

async function runVariant(variant, image) {
  const options = new faceapi.SsdMobilenetv1Options();
  if (variant === 'landmarks') {
    const found = await faceapi.detectAllFaces(image, options).withFaceLandmarks().withFaceExpressions();
    return found.map(faceOut);
  }
  if (variant === 'box') {
    const found = await faceapi.detectAllFaces(image, options).withFaceExpressions();
    return found.map(faceOut);
  }
  if (variant === 'whole') {
    const expressions = await faceapi.nets.faceExpressionNet.predictExpressions(image);
    const [height, width] = image.shape;
    return [{ box: [0, 0, width, height], expressions: { ...expressions } }];
  }
  throw new Error(`unknown variant ${variant}`);
}

async function answer(request) {
  const out = {};
  for (const variant of request.variants) {
    const start = process.hrtime.bigint();
    const pixels = fs.readFileSync(request.rgb);
    const image = tf.tensor3d(Int32Array.from(pixels), [request.height, request.width, 3], 'int32');
    const faces = await runVariant(variant, image);
    image.dispose();
    out[variant] = { ms: Number(process.hrtime.bigint() - start) / 1e6, faces };
  }
  return out;
}

async function main() {
  const [modelDir, backend] = process.argv.slice(2);
  await tf.setBackend(backend || 'cpu');
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);
  const versions = { node: process.version, tfjs: tf.version.tfjs, faceapi: faceapi.version, backend: tf.getBackend() };
  process.stdout.write(`${JSON.stringify({ ready: true, versions })}\n`);
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    process.stdout.write(`${JSON.stringify(await answer(JSON.parse(line)))}\n`);
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
