# Shared by scripts/bench_prep.sh and scripts/bench_webdataset.sh (source it):
# bench_make_data PYTHON SRC TMP N writes
#   TMP/model/     a model folder at LLaVA-1.5's image size: CLIP 336 px / patch
#                  14 (576 image tokens); the tokenizer fixture; CLIP defaults
#   TMP/images/    N COCO-like JPEGs (500x375, quality 85, noisy gradients so
#                  they compress like photos), named 00000.jpg ...
#   TMP/data.json  one v1 conversation per image
# bench_args PYTHON BUILD_DIR [N] [WORKERS] sets python, build, n (default
# 1000), workers (default: all cores) and tmp (a temporary folder removed on exit).
bench_args() {
  python=$1
  build=$2
  n=${3:-1000}
  workers=${4:-$(nproc)}
  tmp=$(mktemp -d /tmp/llava_bench.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
}

bench_make_data() {
  local python=$1 src=$2 tmp=$3 n=$4
  mkdir -p "$tmp/model" "$tmp/images"
  sed 's/"vocab_size": 160/"vocab_size": 4008/; s/"image_token_index": 150/"image_token_index": 4004/;
       s/"image_size": 28/"image_size": 336/; s/"patch_size": 7/"patch_size": 14/;
       s/"image_seq_length": 16/"image_seq_length": 576/; s/"max_position_embeddings": 256/"max_position_embeddings": 2048/' \
    "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/model/config.json"
  cp "$src/tests/fixtures/tokenizer/legacy/tokenizer.json" "$src/tests/fixtures/tokenizer/legacy/tokenizer_config.json" \
    "$tmp/model/"
  "$python" - "$tmp" "$n" <<'EOF'
import json, sys
import numpy as np
from PIL import Image
tmp, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:375, 0:500]
items, size = [], 0
for i in range(n):
    base = np.stack([(xx * (i % 7 + 1) + yy * 3) % 256, (yy * (i % 5 + 2)) % 256, (xx + yy + 37 * i) % 256], -1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = f"{tmp}/images/{i:05d}.jpg"
    Image.fromarray(img).save(path, quality=85)
    items.append({"id": f"{i:05d}", "image": f"{i:05d}.jpg",
                  "conversations": [{"from": "human", "value": "<image>\nWhat is shown in this picture?"},
                                    {"from": "gpt", "value": f"A synthetic pattern number {i} with noise."}]})
json.dump(items, open(f"{tmp}/data.json", "w"))
EOF
}
