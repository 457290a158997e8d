#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# scripts/nexmark_check: on tiny hand-made events with hand-computed outputs of
# every query it says ok; a changed value, a missing row, an extra duplicate
# row or a wrong final changelog row makes it exit 1 naming the query; a
# missing DIR, events file or named output and an unknown query exit 2.
# Usage: test_nexmark_check.sh [path/to/scripts/nexmark_check]
# The sed scripts below are single-quoted on purpose ($ is sed's last line).
# shellcheck disable=SC2016
set -eu
check=${1:-$(dirname "$0")/../../scripts/nexmark_check}
[ -x "$check" ] || {
    echo "FAIL: no checker at $check" >&2
    exit 1
}
if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "SKIP: sqlite3 not installed" >&2
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$work/dump
mkdir "$dir"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# --- events ---------------------------------------------------------------------
cat >"$dir/person.csv" <<'EOF'
id,name,email_address,credit_card,city,state,date_time,extra
1,"Alice","alice@x.com","1111 2222","Portland","OR",1000,""
2,"Bob ""B""","bob@x.com","3333 4444","Boise","ID",3000,"x,y"
3,"Carol","carol@x.com","5555 6666","Austin","TX",12000,""
EOF
cat >"$dir/auction.csv" <<'EOF'
id,item_name,description,initial_bid,reserve,date_time,expires,seller,category,extra
10,"lamp","a lamp",5,10,2000,50000,1,10,""
11,"desk","a ""big"" desk",5,10,4000,30000,2,10,""
12,"pen","a pen",5,10,13000,40000,3,10,""
13,"cup","a cup",5,10,15000,60000,1,11,""
14,"mat","a mat",5,10,25000,60000,3,11,""
EOF
# B7 (22000) is before auction 14 starts and B10 (31000) after auction 11
# expires: neither may win (q4, q6). B4 sits exactly on a window end (q7).
cat >"$dir/bid.csv" <<'EOF'
auction,bidder,price,channel,url,date_time,extra
10,100,20,"web","http://x/1",5000,""
10,101,50,"web","http://x/2",8000,"a,b"
11,102,25,"app","http://x/3",9000,""
11,102,50,"app","http://x/4",10000,""
12,101,30,"web","http://x/5",14000,""
123,100,7,"web","http://x/6",20000,"say ""hi"""
14,103,70,"app","http://x/7",22000,""
14,103,10,"app","http://x/8",26000,""
13,100,40,"web","http://x/9",30000,""
11,103,99,"web","http://x/10",31000,""
EOF

# --- expected outputs, by hand ------------------------------------------------------
# q1: price * 0.908, 3 decimals.
cat >"$dir/q1.csv" <<'EOF'
auction,bidder,price,date_time,extra
10,100,18.160,5000,""
10,101,45.400,8000,"a,b"
11,102,22.700,9000,""
11,102,45.400,10000,""
12,101,27.240,14000,""
123,100,6.356,20000,"say ""hi"""
14,103,63.560,22000,""
14,103,9.080,26000,""
13,100,36.320,30000,""
11,103,89.892,31000,""
EOF
cat >"$dir/q2.csv" <<'EOF'
auction,price
123,7
EOF
# q3: category 10 auctions of sellers in OR/ID/CA (auction 12: seller in TX).
cat >"$dir/q3.csv" <<'EOF'
name,city,state,id
"Bob ""B""","Boise","ID",11
"Alice","Portland","OR",10
EOF
# q4: winners 10:50, 11:50 (not 99), 12:30, 13:40, 14:10 (not 70);
# category 10: 130/3 = 43, category 11: 50/2 = 25. A changelog: last row wins.
cat >"$dir/q4.csv" <<'EOF'
category,avg
10,50
11,40
10,50
10,43
11,25
EOF
# q5: counts per auction in 10 s windows sliding by 2 s; ties at 2000, 4000,
# 10000 and later.
cat >"$dir/q5.csv" <<'EOF'
auction,num,starttime,endtime
10,1,-4000,6000
10,1,-2000,8000
10,2,0,10000
10,2,2000,12000
11,2,2000,12000
10,2,4000,14000
11,2,4000,14000
11,2,6000,16000
11,2,8000,18000
11,1,10000,20000
12,1,10000,20000
12,1,12000,22000
123,1,12000,22000
12,1,14000,24000
123,1,14000,24000
14,1,14000,24000
123,1,16000,26000
14,1,16000,26000
14,2,18000,28000
14,2,20000,30000
14,2,22000,32000
14,1,24000,34000
13,1,24000,34000
11,1,24000,34000
14,1,26000,36000
13,1,26000,36000
11,1,26000,36000
13,1,28000,38000
11,1,28000,38000
13,1,30000,40000
11,1,30000,40000
EOF
# q6: seller 1: (50 + 40) / 2 = 45, seller 2: 50, seller 3: (30 + 10) / 2 = 20.
cat >"$dir/q6.csv" <<'EOF'
seller,avg_price
1,50
2,50
3,30
1,45
3,20
EOF
# q7: window maxima 50, 50, 70, 99; the bid at 10000 is the maximum of the
# window ending at 10000 and of its own, so it appears twice.
cat >"$dir/q7.csv" <<'EOF'
auction,bidder,price,date_time,extra
10,101,50,8000,"a,b"
11,102,50,10000,""
11,102,50,10000,""
14,103,70,22000,""
11,103,99,31000,""
EOF
cat >"$dir/q8.csv" <<'EOF'
id,name,starttime
1,"Alice",0
2,"Bob ""B""",0
3,"Carol",10000
EOF
# q11: bidder 100 has gaps of 15000 and exactly 10000: three sessions.
cat >"$dir/q11.csv" <<'EOF'
bidder,bid_count,starttime,endtime
100,1,5000,15000
100,1,20000,30000
100,1,30000,40000
101,2,8000,24000
102,2,9000,20000
103,3,22000,41000
EOF

# Seller 4 (person 4) has 11 auctions (20..30, category 12), one bid each,
# 20 s apart, far after the others: q6 takes the 10 that expire last (all
# but auction 30): prices 100..109, 1045 / 10 = 104; q4: 1155 / 11 = 105.
echo '4,"Dave","dave@x.com","7777","New York","NY",990000,""' >>"$dir/person.csv"
echo '4,"Dave",990000' >>"$dir/q8.csv"
echo '12,105' >>"$dir/q4.csv"
echo '4,104' >>"$dir/q6.csv"
i=0
while [ $i -le 10 ]; do
    a=$((20 + i)) p=$((100 + i)) t=$((1000000 + 20000 * i))
    echo "$a,\"item$a\",\"\",1,1,$((990000 + i)),$((2000000 - 1000 * i)),4,12,\"\"" \
        >>"$dir/auction.csv"
    echo "$a,104,$p,\"web\",\"http://x/$a\",$t,\"\"" >>"$dir/bid.csv"
    v=$((p * 908))
    printf '%d,104,%d.%03d,%d,""\n' $a $((v / 1000)) $((v % 1000)) $t >>"$dir/q1.csv"
    for k in 0 1 2 3 4; do # alone in each of its 5 windows
        echo "$a,1,$((t - 2000 * k)),$((t - 2000 * k + 10000))" >>"$dir/q5.csv"
    done
    echo "$a,104,$p,$t,\"\"" >>"$dir/q7.csv"
    echo "104,1,$t,$((t + 10000))" >>"$dir/q11.csv"
    i=$((i + 1))
done

# --- all match -----------------------------------------------------------------------
"$check" "$dir" >"$work/out" 2>"$work/err" ||
    fail "checker exited $? on correct outputs: $(cat "$work/out" "$work/err")"
for q in q1 q2 q3 q4 q5 q6 q7 q8 q11; do
    grep -q "^$q: ok (" "$work/out" || fail "$q not ok: $(cat "$work/out")"
done
[ "$(wc -l <"$work/out")" -eq 9 ] || fail "expected 9 lines: $(cat "$work/out")"
grep -q '^q7: ok (16 rows)$' "$work/out" || fail "q7 row count: $(cat "$work/out")"
grep -q '^q4: ok (3 rows)$' "$work/out" || fail "q4 row count: $(cat "$work/out")"
"$check" "$dir" q3 11 >"$work/out" 2>"$work/err" || fail "q3 q11 exited $?"
[ "$(cat "$work/out")" = "q3: ok (2 rows)
q11: ok (17 rows)" ] || fail "q3 q11: $(cat "$work/out")"

# --- perturbations: each exits 1 naming the query ---------------------------------------
# perturb QUERY SED-SCRIPT: edits a copy of DIR/QUERY.csv, expects a mismatch
# of QUERY only, restores the file.
perturb() {
    q=$1
    cp "$dir/$q.csv" "$work/saved"
    sed "$2" "$work/saved" >"$dir/$q.csv"
    if "$check" "$dir" >"$work/out" 2>"$work/err"; then
        fail "$q ($2): exit 0: $(cat "$work/out")"
    else
        rc=$?
    fi
    [ $rc -eq 1 ] || fail "$q ($2): exit $rc: $(cat "$work/out" "$work/err")"
    grep -q "^$q: MISMATCH" "$work/out" || fail "$q ($2): not named: $(cat "$work/out")"
    [ "$(grep -c MISMATCH "$work/out")" -eq 1 ] || fail "$q ($2): $(cat "$work/out")"
    cp "$work/saved" "$dir/$q.csv"
}
perturb q1 's/^11,102,45.400,10000/11,102,45.4,10000/' # formatting counts
perturb q2 's/^123,7$/123,8/'                          # a changed value
perturb q3 's/"Boise"/"Boise "/'                       # strings compare exactly
perturb q3 '/"Alice"/d'                                # a missing row
perturb q4 's/^11,25$/11,24/'                          # wrong final row
perturb q4 '$d'                                        # a key missing
perturb q5 '/^10,2,2000,12000$/p'                      # an extra duplicate
perturb q5 '/^11,2,2000,12000$/d'                      # one side of a tie
perturb q6 '$a\
3,30'                                                  # a wrong row after
perturb q6 's/^3,20$/3,21/'
perturb q6 's/^4,104$/4,105/'                          # last 10 only
perturb q7 '3d'                                        # one of the duplicates
perturb q8 's/^3,"Carol",10000$/3,"Carol",20000/'
perturb q11 's/^100,1,30000,40000$/100,2,20000,40000/' # gap 10000 merged
perturb q11 '/^103,/p'

# The example lines show what differs.
sed 's/^123,7$/123,8/' "$dir/q2.csv" >"$work/q2" && cp "$work/q2" "$dir/q2.csv"
"$check" "$dir" q2 >"$work/out" 2>&1 && fail "q2 perturbed: exit 0"
[ "$(cat "$work/out")" = "q2: MISMATCH: 1 rows only in spate, 1 rows only in SQL
  only in spate: 123,8
  only in SQL:   123,7" ] || fail "q2 examples: $(cat "$work/out")"
printf 'auction,price\n123,7\n' >"$dir/q2.csv"

# --- usage errors exit 2 ------------------------------------------------------------------
expect2() { # what, command...
    what=$1
    shift
    if "$@" >"$work/out" 2>"$work/err"; then
        fail "$what: exit 0"
    else
        rc=$?
    fi
    [ $rc -eq 2 ] || fail "$what: exit $rc: $(cat "$work/out" "$work/err")"
    [ -s "$work/err" ] || fail "$what: no message"
}
expect2 "no arguments" "$check"
expect2 "missing DIR" "$check" "$work/nonexistent"
expect2 "unknown query" "$check" "$dir" q9
rm "$dir/q1.csv"
expect2 "missing qN.csv" "$check" "$dir" q2 q1
mv "$dir/bid.csv" "$work/bid.csv"
expect2 "missing bid.csv" "$check" "$dir" q2
mv "$work/bid.csv" "$dir/bid.csv"
sed 's/^10,100,20,/10,100,x,/' "$dir/bid.csv" >"$work/bid.csv"
cp "$dir/bid.csv" "$work/bid.good"
cp "$work/bid.csv" "$dir/bid.csv"
expect2 "non-numeric price" "$check" "$dir" q2
cp "$work/bid.good" "$dir/bid.csv"
"$check" "$dir" q2 >/dev/null || fail "restored dump does not check"

echo ok
