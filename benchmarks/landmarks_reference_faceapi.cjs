// face-api's own landmark path on raw RGB images: the reference for fer/faces/landmarks.py,
// fer/learning/models/landmarks68.py and fer/faces/alignment.py.
//
// Not run by CI; called by benchmarks/make_landmarks_reference.py (see its docstring for the
// environment; the same one as pretrained_reference_faceapi.cjs, pure-JS `cpu` backend).
// For each image, for each given box it runs what `detectAllFaces(...).withFaceLandmarks()
// .withFaceExpressions()` runs after detection: extractFaceTensors -> faceLandmark68Net ->
// extendWithFaceLandmarks (landmarks in image pixels, alignedRect) -> extractFaceTensors of the
// aligned box -> faceExpressionNet. It also runs face-api's whole pipeline (its SSD detector
// first) and records the same for each face SSD finds.
//
// usage: node landmarks_reference_faceapi.cjs MODEL_DIR SPEC.json OUT.json
//   MODEL_DIR  face-api's model/ folder (ssd_mobilenetv1, face_landmark_68, face_expression)
//   SPEC.json  [{"pixels": "FILE.u8", "height": H, "width": W, "boxes": [[x, y, w, h], ...]}]
//   OUT.json   [{"given": [FACE...], "ssd": [FACE...]}] with FACE = {"box", "score",
//              "landmarks" (68 x [x, y]), "aligned" ([x, y, w, h]), "expressions" (7)}
'use strict';

const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const boxOf = (b) => [b.x, b.y, b.width, b.height];

function describe(result) {
  return {
    box: boxOf(result.detection.box),
    score: result.detection.score,
    landmarks: result.landmarks.positions.map((p) => [p.x, p.y]),
    aligned: boxOf(result.alignedRect.box),
    expressions: faceapi.FACE_EXPRESSION_LABELS.map((label) => result.expressions[label]),
  };
}

async function givenBox(image, width, height, [x, y, w, h]) {
  const dims = { width, height };
  const detection = new faceapi.FaceDetection(1, new faceapi.Rect(x / width, y / height, w / width, h / height), dims);
  const [face] = await faceapi.extractFaceTensors(image, [detection]);
  const landmarks = await faceapi.nets.faceLandmark68Net.detectLandmarks(face);
  face.dispose();
  const result = faceapi.extendWithFaceLandmarks({ detection }, landmarks);
  const [aligned] = await faceapi.extractFaceTensors(image, [result.alignedRect]);
  result.expressions = await faceapi.nets.faceExpressionNet.predictExpressions(aligned);
  aligned.dispose();
  return describe(result);
}

async function main() {
  const [modelDir, specPath, outPath] = process.argv.slice(2);
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  const out = [];
  for (const item of spec) {
    const bytes = fs.readFileSync(item.pixels);
    if (bytes.length !== item.height * item.width * 3) throw new Error(`${item.pixels}: wrong size`);
    const image = tf.tensor3d(Int32Array.from(bytes), [item.height, item.width, 3], 'int32');
    const given = [];
    for (const box of item.boxes) given.push(await givenBox(image, item.width, item.height, box));
    const found = await faceapi.detectAllFaces(image, new faceapi.SsdMobilenetv1Options())
      .withFaceLandmarks().withFaceExpressions();
    out.push({ given, ssd: found.map(describe) });
    image.dispose();
  }
  const versions = { node: process.version, tfjs: tf.version.tfjs, faceapi: faceapi.version, backend: tf.getBackend() };
  fs.writeFileSync(outPath, JSON.stringify({ images: out, versions }));
}

main().catch((err) => { console.error(err); process.exit(1); });
