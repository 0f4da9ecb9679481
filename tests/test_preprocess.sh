# `llava preprocess` end to end: exit codes, messages, the output file.
# (Pixel parity with Pillow/transformers is test_image.c's job.)
# usage: bash test_preprocess.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
LLAVA=$1
FIX=$2/tests/fixtures/images
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# A model folder with preprocessor_config.json (S = 32).
out=$("$LLAVA" preprocess --image "$FIX/src/jpeg_rgb_444.jpg" --model "$FIX/configs/clip32" --aspect pad \
      --out "$TMP/a.safetensors" --u8 2>&1) || fail "good image: exit $? ($out)"
[ -s "$TMP/a.safetensors" ] || fail "no output file"
grep -q '\[3, 32, 32\]' <<<"$out" || fail "summary lacks the shape: $out"
# The file holds F32 [3,32,32] + U8 [3,32,32] after an 8-byte length and the JSON header.
hdr=$(od -An -t u8 -N 8 "$TMP/a.safetensors" | tr -d ' ')
size=$(stat -c %s "$TMP/a.safetensors")
[ "$size" -eq $((8 + hdr + 3 * 32 * 32 * 5)) ] || fail "output size $size (header $hdr)"
grep -q '"pixel_values"' "$TMP/a.safetensors" || fail "no pixel_values tensor"

# --size without a model; a PNG named .jpg (format from the content).
"$LLAVA" preprocess --image "$FIX/src/png_named_jpg.jpg" --size 48 --out "$TMP/b.safetensors" >/dev/null 2>&1 ||
  fail "PNG named .jpg with --size"

# A model folder without preprocessor_config.json: defaults, with a note.
mkdir -p "$TMP/model"
err=$("$LLAVA" preprocess --image "$FIX/src/png_rgb.png" --model "$TMP/model" --out "$TMP/c.safetensors" 2>&1 >/dev/null) ||
  fail "model without preprocessor_config.json"
grep -q "336" <<<"$err" || fail "no note about the 336 default: $err"

# Bad input: exit 2 and a message naming the file.
for f in text.jpg truncated.png bomb.jpg empty.png; do
  err=$("$LLAVA" preprocess --image "$FIX/bad/$f" --size 32 --out "$TMP/x.safetensors" 2>&1 >/dev/null)
  rc=$?
  [ $rc -eq 2 ] || fail "$f: exit $rc, want 2"
  grep -q "$f" <<<"$err" || fail "$f: message does not name the file: $err"
done
[ -e "$TMP/x.safetensors" ] && fail "an output was written for bad input"
"$LLAVA" preprocess --image "$FIX/src/png_rgb.png" --size 32 --aspect wide --out "$TMP/x.safetensors" 2>/dev/null
[ $? -eq 2 ] || fail "--aspect wide accepted"
"$LLAVA" preprocess --image "$FIX/src/png_rgb.png" --out "$TMP/x.safetensors" 2>/dev/null
[ $? -eq 2 ] || fail "neither --model nor --size accepted"
"$LLAVA" preprocess --image "$FIX/src/png_rgb.png" --size 32 --max-pixels 100 --out "$TMP/x.safetensors" 2>/dev/null
[ $? -eq 2 ] || fail "--max-pixels 100 accepted a 45x67 image"
"$LLAVA" preprocess --help >/dev/null || fail "--help"

if [ $fails -ne 0 ]; then echo "test_preprocess: $fails failures"; exit 1; fi
echo "test_preprocess: ok"
