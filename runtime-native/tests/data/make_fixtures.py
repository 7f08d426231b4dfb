"""Writes the tiny official-format fixtures in this folder (GLUE TSVs, GSM8k JSONL, VTAB-1k lists + images).

Run from the repository root: runtime-native/.venv/bin/python runtime-native/tests/data/make_fixtures.py
The texts are invented; only the file layouts follow the official distributions."""
import json
import os
import zlib
import struct
import numpy as np
root = "runtime-native/tests/data"
def w(path, lines, bom=False):
    p = os.path.join(root, path); os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        f.write("".join(l + "\n" for l in lines))
T = "\t".join
# CoLA: no header; source, label, original mark, sentence
w("glue/CoLA/train.tsv", [T(["gj04", "1", "", "The cat sat on the warm mat."]),
                           T(["gj04", "0", "*", "Cat the mat on sat."]),
                           T(["bc01", "1", "", "She said \"hello\" to everyone."]),
                           T(["bc01", "0", "*", "Him went to the \"store yesterday."]),
                           T(["ks08", "1", "", "Which book did you read?"])])
w("glue/CoLA/dev.tsv", [T(["gj04", "1", "", "Birds fly south in winter."]),
                         T(["gj04", "0", "*", "Winter in south fly birds the."]),
                         T(["bc01", "1", "", "It's raining."])])
w("glue/SST-2/train.tsv", ["sentence\tlabel", "a charming , funny film \t1", "dull and \" lifeless \t0",
                            "the best movie of the year \t1", "a waste of time \t0"])
w("glue/SST-2/dev.tsv", ["sentence\tlabel", "it 's a \"masterpiece\t1", "tedious beyond words \t0"])
w("glue/MRPC/train.tsv", [T(["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]),
                           T(["1", "101", "102", "The company said profits rose 5 percent .", "Profits rose 5 percent , the company said ."]),
                           T(["0", "103", "104", "\"We are done,\" he said .", "He said the plan would continue ."]),
                           T(["1", "105", "106", "Shares fell in early trading .", "Shares dropped early in the session ."])], bom=True)
w("glue/MRPC/dev.tsv", [T(["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]),
                         T(["1", "201", "202", "The vote was delayed .", "The vote was postponed ."]),
                         T(["0", "203", "204", "Rain is expected Monday .", "The team won on Monday ."])], bom=True)
w("glue/QQP/train.tsv", [T(["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]),
                          T(["1", "1", "2", "How do I learn Python?", "What is the best way to learn Python?", "1"]),
                          T(["2", "3", "4", "Why is the sky blue?", "How tall is Everest?", "0"]),
                          T(["3", "5", "6", "What is a \"black hole\"?", "broken row without a label"]),
                          T(["4", "7", "8", "How can I sleep better?", "What helps me sleep well?", "1"])])
w("glue/QQP/dev.tsv", [T(["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]),
                        T(["9", "9", "10", "Is coffee healthy?", "Is coffee good for you?", "1"]),
                        T(["10", "11", "12", "How do magnets work?", "Who wrote Hamlet?", "0"])])
sts_h = T(["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"])
w("glue/STS-B/train.tsv", [sts_h, T(["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A man is playing a guitar.", "A man plays the guitar.", "5.000"]),
                            T(["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none", "A woman is slicing an onion.", "A dog runs in the park.", "0.200"]),
                            T(["2", "main-news", "headlines", "2013", "0010", "none", "none", "Markets rally on \"good news\".", "Stocks rise after news.", "3.600"])])
w("glue/STS-B/dev.tsv", [sts_h, T(["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none", "A child is reading.", "A kid reads a book.", "4.250"]),
                          T(["1", "main-captions", "MSRvid", "2012test", "0005", "none", "none", "A car drives by.", "A bird sings.", "0.000"])])
mnli_tr = T(["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"])
mnli_dev = T(["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "label2", "label3", "label4", "label5", "gold_label"])
def mrow(i, g, a, b, labs):
    return T([str(i), str(100 + i), f"{100 + i}e", g, "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b] + labs)
w("glue/MNLI/train.tsv", [mnli_tr, mrow(0, "fiction", "The door was open.", "The door was not closed.", ["entailment", "entailment"]),
                           mrow(1, "government", "He paid the bill.", "He did not pay.", ["contradiction", "contradiction"]),
                           mrow(2, "travel", "We walked to the beach.", "It was sunny.", ["neutral", "neutral"])])
w("glue/MNLI/dev_matched.tsv", [mnli_dev, mrow(0, "fiction", "She smiled.", "She was happy.", ["neutral", "neutral", "entailment", "neutral", "neutral", "neutral"]),
                                 mrow(1, "travel", "The train left at noon.", "The train left at midnight.", ["contradiction"] * 6)])
w("glue/MNLI/dev_mismatched.tsv", [mnli_dev, mrow(0, "letters", "Thank you for the gift.", "A gift was received.", ["entailment"] * 6),
                                    mrow(1, "oup", "Prices rose.", "Prices fell.", ["contradiction"] * 6),
                                    mrow(2, "verbatim", "He spoke quietly.", "He was in a library.", ["neutral"] * 6)])
for task, cols in [("QNLI", ["index", "question", "sentence", "label"]), ("RTE", ["index", "sentence1", "sentence2", "label"])]:
    w(f"glue/{task}/train.tsv", [T(cols), T(["0", "Where is Paris?", "Paris is in France.", "entailment"]),
                                 T(["1", "Who won?", "The game was on Sunday.", "not_entailment"])])
    w(f"glue/{task}/dev.tsv", [T(cols), T(["0", "What is water made of?", "Water is made of hydrogen and oxygen.", "entailment"]),
                               T(["1", "When did it start?", "It is blue.", "not_entailment"])])
w("glue/WNLI/train.tsv", ["index\tsentence1\tsentence2\tlabel", T(["0", "The trophy did not fit in the case because it was too big.", "The trophy was too big.", "1"]),
                           T(["1", "The trophy did not fit in the case because it was too big.", "The case was too big.", "0"])])
w("glue/WNLI/dev.tsv", ["index\tsentence1\tsentence2\tlabel", T(["0", "Ann thanked Mia because she helped.", "Mia helped.", "1"])])

# GSM8k JSONL (official fields; answers with calculator annotations and '#### N')
def rec(q, a): return json.dumps({"question": q, "answer": a})
tr = [rec("Sam has 12 marbles and buys 8 more. How many marbles does he have?", "Sam has 12+8=<<12+8=20>>20 marbles.\n#### 20"),
      rec("A box holds 6 eggs. How many eggs are in 4 boxes?", "4 boxes hold 4*6=<<4*6=24>>24 eggs.\n#### 24"),
      rec("Lia earns $1,200 a month. How much does she earn in 2 months?", "She earns 1200*2=<<1200*2=2400>>2400 dollars.\n#### 2,400")]
te = [rec("Ben reads 5 pages a day for 3 days. How many pages does he read?", "He reads 5*3=<<5*3=15>>15 pages.\n#### 15"),
      rec("A rope of 10 m is cut in half. How long is each piece?", "Each piece is 10/2=<<10/2=5>>5 m.\n#### 5")]
w("gsm8k/train.jsonl", tr); w("gsm8k/test.jsonl", te)

# VTAB-1k: two tasks in the NOAH layout; images as .npy (8x8 RGB uint8 / 8x8 grayscale) and one PNG
def png_bytes(arr):  # minimal 8-bit RGB PNG writer
    h, wd, _ = arr.shape
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(h))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", wd, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
rng = np.random.default_rng(0)
for task, ncls, gray in [("dtd", 47, False), ("smallnorb_ele", 9, True)]:
    d = os.path.join(root, "vtab-1k", task); os.makedirs(os.path.join(d, "images"), exist_ok=True)
    entries = []
    for i in range(10):
        label = int(rng.integers(0, ncls))
        img = rng.integers(0, 256, size=(8, 8) if gray else (8, 8, 3), dtype=np.uint8)
        np.save(os.path.join(d, "images", f"{i:04d}.npy"), img)
        entries.append(f"images/{i:04d}.npy {label}")
    w(f"vtab-1k/{task}/train800.txt", entries[:4]); w(f"vtab-1k/{task}/val200.txt", entries[4:6])
    w(f"vtab-1k/{task}/train800val200.txt", entries[:6]); w(f"vtab-1k/{task}/test.txt", entries[6:])
img = np.zeros((4, 4, 3), dtype=np.uint8); img[:, :, 0] = 255; img[0, 0] = (0, 255, 0)
with open(os.path.join(root, "vtab-1k", "dtd", "images", "red.png"), "wb") as f: f.write(png_bytes(img))
