#!/usr/bin/env bash
# `llava tokenize` end to end: the exact stdout Hugging Face tokenizers' ids
# give (tests/fixtures/tokenizer/cli, made by scripts/make_tokenizer_fixtures.py),
# --no-bos, --decode round trips, and exit codes on bad input.
set -u
llava=$1
src=$2
fix=$src/tests/fixtures/tokenizer
fail=0
TMPDIR_T=$(mktemp -d)
trap 'rm -rf "$TMPDIR_T"' EXIT
check() {  # name, condition result
    if [ "$2" != 0 ]; then echo "FAIL $1"; fail=1; else echo "ok   $1"; fi
}

for form in legacy metaspace; do
    for name in hello image unicode; do
        out=$("$llava" tokenize --tokenizer "$fix/$form" < "$fix/cli/$name.txt")
        [ "$out" == "$(cat "$fix/cli/$name.$form.ids")" ]
        check "$form $name ids" $?
    done
    want=$(sed 's/^\[1, /[/' "$fix/cli/hello.$form.ids")
    out=$("$llava" tokenize --tokenizer "$fix/$form" --no-bos < "$fix/cli/hello.txt")
    [ "$out" == "$want" ]
    check "$form --no-bos" $?
    for name in hello unicode; do
        "$llava" tokenize --tokenizer "$fix/$form" < "$fix/cli/$name.txt" |
            "$llava" tokenize --tokenizer "$fix/$form" --decode --skip-special > "$TMPDIR_T/out.txt" 2>&1
        cmp -s "$TMPDIR_T/out.txt" "$fix/cli/$name.txt"
        check "$form $name round trip" $?
    done 2>/dev/null
done

out=$("$llava" tokenize --tokenizer "$fix/legacy" --decode < "$fix/cli/hello.legacy.ids")
[ "$out" == "<s> $(cat "$fix/cli/hello.txt")" ]
check "decode keeps special tokens without --skip-special" $?

echo 'not json' | "$llava" tokenize --tokenizer "$fix/legacy" --decode > /dev/null 2>&1
[ $? == 2 ]
check "malformed --decode input exits 2" $?
echo '[1.5]' | "$llava" tokenize --tokenizer "$fix/legacy" --decode > /dev/null 2>&1
[ $? == 2 ]
check "non-integer id exits 2" $?
msg=$(echo hi | "$llava" tokenize --tokenizer /nonexistent 2>&1)
rc=$?
[ $rc == 2 ] && [[ "$msg" == *tokenizer.json* ]]
check "missing tokenizer folder exits 2 and says what is missing" $?
exit $fail
