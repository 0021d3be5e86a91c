#!/usr/bin/env python3
"""Build a tiny BRIGHT dataset in the exact Hugging Face `xlangai/BRIGHT` layout, and compute its
reference scores with sentence-transformers + pytrec_eval following BRIGHT's run.py.

Writes
  fixtures/bright-hub/<config>/<task>-00000-of-00001.parquet   for the configs examples,
        documents, long_documents (biology only, as upstream has none for leetcode and
        theoremqa_theorems) and gpt4_reason, and the tasks biology, leetcode, theoremqa_theorems
  fixtures/bright-hub/README.md                  what the fixture contains (generated)
  fixtures/goldens/bright-fixture-minilm.json    the reference (schema below)

Parquet: written by pyarrow with its defaults (snappy compression, one row group, Parquet-
compliant nested lists, i.e. `list<element: string>`), plus the `huggingface` schema metadata
that `datasets` writes (features with `Value("string")` / `Sequence(Value("string"))`), like
`datasets.push_to_hub`. Columns, in upstream order:
  examples, gpt4_reason: query string, reasoning string, id string, excluded_ids list<string>,
                         gold_ids_long list<string>, gold_ids list<string>, gold_answer string
  documents, long_documents: id string, content string
gpt4_reason has the same rows as examples with `query` replaced by a longer reasoning text.

The texts are short hand-written English passages (biology: insects and light, the nasal cycle,
photosynthesis...; leetcode: problem statements with the approach; theoremqa_theorems: theorem
statements), so all-MiniLM-L6-v2 retrieves them non-trivially. The data traps of bright.md §4 are
built in deliberately:
  * biology: `blood_type/ABO_blood_group_system_1.txt` occurs twice in `documents` with different
    content; the LATER row (the on-topic one, a gold document) wins, as in BRIGHT's score map;
  * duplicate texts under different ids: a boilerplate chunk under three biology ids; a gold chunk
    of query 0 also under `insects_attracted_to_light/moth_1.txt` (byte order puts it BEFORE the
    gold id in the tie); Fermat's little theorem under theorem ids "998" and "1020" ("998" > "1020"
    in byte order, and "1020" is the gold one);
  * a gold id listed twice in one query (theoremqa_theorems, fermat query);
  * leetcode: every query's own problem is in the corpus and listed in its excluded_ids, plus
    other excluded problems; one list repeats an id; excluded and gold ids never overlap, and
    every excluded id is in the corpus (BRIGHT pops them from its score map without a default);
  * excluded_ids shapes: ["N/A"] (biology), real lists (leetcode), [] (theoremqa_theorems);
  * path-like ids with "/" and ".txt" / ".json"; numeric-string ids ("998", "18695");
  * biology long documents longer than MiniLM's 256-token window, one gold long document whose
    relevant part starts after the window.

Reference (BRIGHT run.py, bright.md §5.1): queries without instruction and documents embedded with
all-MiniLM-L6-v2 through SentenceTransformer (max_seq_length 256, normalize_embeddings=True,
float32; every distinct text embedded once and its vector shared by all ids that carry it);
score = float32 dot product of the normalised vectors (= cosine); for each query a map
{doc_id: score} over the corpus rows in order (a later duplicate id overwrites), excluded ids
deleted (the literal "N/A" skipped), sorted descending, top 1000 kept; qrels {gold id: 1}
(de-duplicated); pytrec_eval with {ndcg_cut.10, recall.1,10,100, recip_rank}; mean per task over
the evaluated queries, then the unweighted mean over tasks. Three settings:
  short        examples queries, documents, gold_ids               (3 tasks)
  long         examples queries, long_documents, gold_ids_long     (biology only)
  gpt4_reason  gpt4_reason queries, documents, gold_ids            (3 tasks)
pytrec_eval ranks by float32 score and breaks ties by docid descending (bytes); identical texts
under several ids get bit-identical scores, so their order is decided by the ids.

Schema of bright-fixture-minilm.json (compact JSON):
  {"generator", "versions", "model", "model_sha256", "max_seq_length": 256, "normalize": true,
   "score": str, "top_k": 1000, "measures": ["ndcg_cut_10", "recall_1", "recall_10",
   "recall_100", "recip_rank"], "dataset": "fixtures/bright-hub",
   "tasks": {task: {"queries", "document_rows", "distinct_ids", "id_collisions",
                    "distinct_texts", "documents_over_max_length",
                    ("long_document_rows", "long_distinct_ids", "long_id_collisions",
                     "long_distinct_texts", "long_documents_over_max_length": biology only)}},
   "settings": {"short" | "long" | "gpt4_reason": {
       "queries_config", "documents_config", "gold_field",
       "tasks": {task: {"evaluated_queries": int, "mean": {measure: float},
                        "per_query": {qid: {measure: float}},
                        "top10": {qid: [[doc_id, score], ...]}   (pytrec_eval order)}},
       "mean_over_tasks": {measure: float}}},
   "counterfactuals": {"setting": "short", "measure": "ndcg_cut_10",
       "first_row_wins_on_duplicate_ids": {"biology": float},
       "exclusions_ignored": {"leetcode": float},
       "ties_by_docid_ascending": {"biology": float, "theoremqa_theorems": float}}}
  (counterfactuals: the task means a wrong implementation would get, for negative tests)
Means are unrounded doubles (BRIGHT prints them rounded to 5 decimals); scores are float32 values.

Usage:  python scripts/make_bright_fixture.py [--minilm DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytrec_eval  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HUB = REPO / "fixtures" / "bright-hub"
GOLDENS = REPO / "fixtures" / "goldens"
DEFAULT_MINILM = Path.home() / ".cache" / "reasonembed" / "models" / "minilm"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

TASKS = ["biology", "leetcode", "theoremqa_theorems"]
CONFIGS = ["examples", "documents", "long_documents", "gpt4_reason"]
TOP_K = 1000
MAX_SEQ_LENGTH = 256
PYTREC_MEASURES = {"ndcg_cut.10", "recall.1,10,100", "recip_rank"}
MEASURES = ["ndcg_cut_10", "recall_1", "recall_10", "recall_100", "recip_rank"]

EXAMPLE_SCHEMA = pa.schema(
    [
        ("query", pa.string()),
        ("reasoning", pa.string()),
        ("id", pa.string()),
        ("excluded_ids", pa.list_(pa.string())),
        ("gold_ids_long", pa.list_(pa.string())),
        ("gold_ids", pa.list_(pa.string())),
        ("gold_answer", pa.string()),
    ]
)
DOCUMENT_SCHEMA = pa.schema([("id", pa.string()), ("content", pa.string())])


def hf_metadata(schema: pa.Schema) -> dict[bytes, bytes]:
    """The `huggingface` key `datasets` stores in every parquet file it writes."""
    value = {"dtype": "string", "_type": "Value"}
    features = {
        f.name: ({"feature": value, "_type": "Sequence"} if pa.types.is_list(f.type) else value) for f in schema
    }
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


# ============================================================================================
# Data: biology
# ============================================================================================

BOILERPLATE = (
    "This article needs additional citations for verification. Please help improve this article "
    "by adding citations to reliable sources. Unsourced material may be challenged and removed."
)

# (page id without the chunk suffix, [chunk texts]); chunk i has id f"{page}_{i}.txt" and the long
# document f"{page}.txt" is the page title plus all chunks (plus LONG_EXTRA for some pages).
BIOLOGY_PAGES = [
    ("insects_attracted_to_light/Phototaxis", [
        "Phototaxis is a kind of taxis, or locomotory movement, that occurs when a whole organism moves "
        "towards or away from a stimulus of light. Movement towards the light is called positive "
        "phototaxis, movement away from it negative phototaxis.",
        "Many flying insects such as moths show positive phototaxis at night. A classic hypothesis is that "
        "they navigate by keeping a distant light source, like the moon, at a constant angle to their "
        "flight path.",
        "A nearby artificial light breaks this rule: keeping a fixed angle to a close lamp makes the insect "
        "spiral in towards it, which is why moths circle street lights until they are exhausted.",
        "High-speed tracking of insects around lamps suggests they tilt their backs towards the brightest "
        "part of the sky to stay level. A lamp beside or below them confuses this dorsal light response "
        "and traps them in orbits and stalls.",
        BOILERPLATE,
    ]),
    ("insects_attracted_to_light/Proximate_and_ultimate_causation", [
        "A proximate cause is the event closest to an observed result, the immediate mechanism; an "
        "ultimate cause explains why a trait evolved, in terms of its effect on survival and reproduction.",
        "For example, the proximate cause of a moth flying into a lamp is its visual and flight control "
        "system, while the ultimate explanation asks what benefit such behaviour gave its ancestors when "
        "the only lights at night were the moon and the stars.",
    ]),
    ("insects_attracted_to_light/moth", [
        "Moths are mostly nocturnal insects closely related to butterflies. Adults of many species feed "
        "on nectar, and their larvae are caterpillars.",
        # identical to Phototaxis_2 (duplicate text under another id)
        "A nearby artificial light breaks this rule: keeping a fixed angle to a close lamp makes the insect "
        "spiral in towards it, which is why moths circle street lights until they are exhausted.",
    ]),
    ("breathe_out_of_one_nostril/Nasal_cycle", [
        "The nasal cycle is the alternating partial congestion and decongestion of the nasal cavities in "
        "humans and other animals. At any moment most of the air flows through one nostril.",
        "The cycle is controlled by the autonomic nervous system, which swells the erectile tissue of the "
        "turbinates on one side while the other side shrinks, switching sides every few hours.",
        "Lying on one side makes the lower nostril congest. The alternation may let each side of the nose "
        "rest and restore its mucus layer, and it may help the sense of smell pick up different odours.",
        BOILERPLATE,
    ]),
    ("photosynthesis/Photosynthesis", [
        "Photosynthesis is the process by which plants, algae and some bacteria convert light energy into "
        "chemical energy, using carbon dioxide and water to make glucose and releasing oxygen.",
        "The light-dependent reactions take place in the thylakoid membranes of the chloroplast, where "
        "absorbed light splits water and drives the production of ATP and NADPH.",
        "In the Calvin cycle in the stroma, the enzyme RuBisCO fixes carbon dioxide, and ATP and NADPH "
        "are used to build three-carbon sugars.",
    ]),
    ("photosynthesis/Chlorophyll", [
        "Chlorophyll absorbs blue and red light strongly but reflects most green light, which is why "
        "leaves look green. Absorbing every colour could overheat the leaf and damage its machinery.",
        "In autumn deciduous trees break down their chlorophyll, revealing yellow carotenoids, and some "
        "species make red anthocyanins.",
    ]),
    ("why_do_we_yawn/Yawn", [
        "A yawn is a reflex of inhaling air deeply while the jaws open wide and the eardrums stretch, "
        "followed by a slow exhalation.",
        "Contagious yawning, yawning after seeing, hearing or even reading about someone else yawning, "
        "occurs in humans, chimpanzees and dogs and is linked to empathy and social bonding.",
        "One hypothesis holds that yawning cools the brain: the deep intake of air and the stretching of "
        "the jaw increase blood flow to the head and exchange heat.",
    ]),
    ("hiccups/Hiccup", [
        "A hiccup is an involuntary spasm of the diaphragm followed by sudden closure of the vocal cords, "
        "which produces the characteristic hic sound.",
        "Hiccups are often triggered by eating too quickly, fizzy drinks or sudden excitement; the reflex "
        "arc involves the phrenic and vagus nerves and a centre in the brainstem.",
        "Most bouts stop on their own. Holding the breath or sipping cold water raises carbon dioxide in "
        "the blood or stimulates the vagus nerve and may interrupt the reflex.",
        BOILERPLATE,
    ]),
    ("blood_type/ABO_blood_group_system", [
        "The ABO blood group system classifies human blood by the A and B antigens present on the surface "
        "of red blood cells.",
        "People with type A blood carry anti-B antibodies in their plasma. If they receive type B red "
        "cells, the antibodies bind the B antigen and cause agglutination and a dangerous haemolytic "
        "transfusion reaction.",
        "Type O red cells carry neither antigen, so they can be given to most recipients, which is why "
        "O negative donors are called universal donors.",
    ]),
    ("bird_migration/Bird_migration", [
        "Bird migration is the regular seasonal journey of many bird species between their breeding and "
        "wintering grounds, often thousands of kilometres long.",
        "Migrating birds orient using the position of the sun, the pattern of stars around the celestial "
        "pole, and landmarks such as coastlines, rivers and mountain ranges.",
    ]),
    ("bird_migration/Magnetoreception", [
        "Magnetoreception is the ability to sense the Earth's magnetic field. In birds it is thought to "
        "rely on light-sensitive cryptochrome proteins in the retina.",
        "European robins in orientation cages lost their sense of direction when the magnetic field was "
        "disturbed by weak radio-frequency noise, which supports a compass based on radical pairs.",
    ]),
    ("muscle_cramp/Cramp", [
        "A cramp is a sudden, involuntary and painful contraction of a muscle, most often in the calf, that "
        "usually lasts from a few seconds to several minutes.",
        "Night-time leg cramps are associated with muscle fatigue, dehydration and low potassium or "
        "magnesium; stretching the muscle activates tendon receptors that make it relax.",
    ]),
    ("light_pollution/Light_pollution", [
        "Light pollution is excessive or badly directed artificial light at night. It brightens the sky, "
        "hides the stars and wastes energy.",
        "Street lamps kill huge numbers of insects every summer night and disorient birds that migrate "
        "in the dark.",
    ]),
    ("sleep/Circadian_rhythm", [
        "A circadian rhythm is a roughly 24-hour cycle in physiology and behaviour, driven by a clock in "
        "the hypothalamus and reset every day by light.",
        "Melatonin, released by the pineal gland in darkness, signals night to the body and helps to "
        "regulate sleep.",
    ]),
    ("respiration/Cellular_respiration", [
        "Cellular respiration breaks down glucose with oxygen in the mitochondria and stores the released "
        "energy as ATP, producing carbon dioxide and water.",
    ]),
    ("immune_system/Antibody", [
        "An antibody is a Y-shaped protein produced by B cells that recognises one specific antigen and "
        "marks it for destruction by the immune system.",
    ]),
    ("smell/Olfaction", [
        "Olfaction, the sense of smell, begins when odour molecules bind to receptors in the olfactory "
        "epithelium at the roof of the nasal cavity.",
    ]),
    ("fish/Lateral_line", [
        "The lateral line is a sense organ in fish that detects movement, pressure changes and vibration "
        "in the surrounding water.",
    ]),
    ("bees/Waggle_dance", [
        "Honey bees tell their nestmates the direction of food with the waggle dance, using the position "
        "of the sun as a reference.",
        BOILERPLATE,
    ]),
    ("plants/Stoma", [
        "Stomata are pores in the leaf surface that let carbon dioxide in and water vapour out; guard "
        "cells open and close them.",
    ]),
    ("vision/Rod_cell", [
        "Rod cells in the retina work in dim light and allow vision at night, but they do not "
        "distinguish colours.",
    ]),
    ("genetics/Dominance", [
        "In genetics, dominance describes how one allele masks the effect of another; the A and B blood "
        "group alleles are codominant and both dominant over O.",
    ]),
    ("diaphragm/Thoracic_diaphragm", [
        "The thoracic diaphragm is a sheet of muscle below the lungs; when it contracts the chest cavity "
        "expands and air is drawn in.",
    ]),
]

# Long-document extras: text put BEFORE the chunks (pushes them past 256 tokens) or after them.
LONG_PREFIX = {
    "bird_migration/Magnetoreception": (
        "Magnetoreception has been reported in a wide range of animals, including bacteria, molluscs, "
        "arthropods, fish, amphibians, reptiles and mammals. Magnetotactic bacteria contain chains of "
        "magnetite crystals that passively align them with field lines. Sea turtles are thought to read "
        "the inclination and intensity of the field to recognise their natal beaches. Spiny lobsters "
        "navigate back to their dens after being displaced by many kilometres. Salmon return to the river "
        "where they hatched. Mole rats build their nests in a preferred compass direction, and cattle and "
        "deer have been reported to align their bodies north to south while grazing, although this claim "
        "is disputed. Honey bees can be trained to respond to magnetic anomalies. Several mechanisms have "
        "been proposed: particles of magnetite linked to nerve endings, electromagnetic induction in the "
        "electroreceptors of sharks and rays, and chemical reactions whose products depend on the field. "
        "The history of the field goes back to observations of homing pigeons in the nineteenth century, "
        "and many early experiments were inconclusive because the effects are small and the controls are "
        "difficult. Modern studies use double-blind designs, coils that cancel the ambient field, and "
        "careful statistics over many trials. "
    ),
}
LONG_SUFFIX = {
    "insects_attracted_to_light/Phototaxis": (
        " Phototaxis is also found in single-celled organisms. Green algae such as Chlamydomonas have an "
        "eyespot that shades a light receptor as the cell rotates, letting it steer its two flagella "
        "towards light of moderate intensity and away from harmful bright light. Some bacteria and "
        "archaea swim towards or away from light depending on its wavelength. In animals the response "
        "is often graded and depends on age, season and the time of day: larvae of many marine animals "
        "swim towards light after hatching and away from it before they settle, and zooplankton migrate "
        "vertically every day. Phototaxis differs from phototropism, the directional growth of plants "
        "towards light, and from photokinesis, a change of speed rather than direction. Researchers use "
        "light traps to survey insect populations, exploiting positive phototaxis."
    ),
    "photosynthesis/Photosynthesis": (
        " The overall equation is 6 CO2 + 6 H2O + light → C6H12O6 + 6 O2. C4 and CAM plants concentrate "
        "carbon dioxide before the Calvin cycle, reducing photorespiration in hot and dry climates. "
        "Photosynthesis produced the oxygen in the atmosphere and is the source of almost all organic "
        "carbon in the biosphere."
    ),
}

# The id collision: this row comes BEFORE the real chunk 1 of the ABO page in `documents`.
COLLISION_ID = "blood_type/ABO_blood_group_system_1.txt"
COLLISION_EARLY_TEXT = (
    "Blood pressure is the pressure of circulating blood against the walls of the arteries, measured in "
    "millimetres of mercury as a systolic over a diastolic value."
)

BIOLOGY_QUERIES = [
    {
        "id": "0",
        "query": "Why are insects attracted to light? I read that moths fly to lamps because they mistake "
                 "them for the moon, but the article also says this only describes the mechanism and not "
                 "why the behaviour evolved. What is actually going on?",
        "reasoning": "The question asks why insects fly to artificial lights. The documents describe "
                     "phototaxis and the difference between proximate and ultimate causes.",
        "gold_ids": ["insects_attracted_to_light/Phototaxis_1.txt", "insects_attracted_to_light/Phototaxis_2.txt",
                     "insects_attracted_to_light/Phototaxis_3.txt",
                     "insects_attracted_to_light/Proximate_and_ultimate_causation_0.txt",
                     "insects_attracted_to_light/Proximate_and_ultimate_causation_1.txt"],
        "gold_ids_long": ["insects_attracted_to_light/Phototaxis.txt",
                          "insects_attracted_to_light/Proximate_and_ultimate_causation.txt"],
        "gold_answer": "Moths keep a constant angle to distant lights to fly straight; a nearby lamp turns "
                       "that rule into a spiral. That is the proximate mechanism; the ultimate cause is the "
                       "navigational benefit under natural light.",
        "gpt4": "The essential problem is to explain why flying insects gather around artificial lights, and "
                "to separate the immediate mechanism from the evolutionary reason. Relevant knowledge: "
                "positive phototaxis, navigation by keeping a constant angle to a distant light such as the "
                "moon, the dorsal light response that keeps insects level, and the distinction between "
                "proximate causes (how the nervous system steers) and ultimate causes (why the trait was "
                "selected). A nearby lamp breaks the distant-light assumption, so the insect spirals or "
                "stalls around it.",
    },
    {
        "id": "1",
        "query": "Why do I only breathe out of one nostril? When I pay attention, almost all the air goes "
                 "through my left nostril, and a few hours later it is the right one. Is something wrong "
                 "with my nose?",
        "reasoning": "Airflow alternating between nostrils is the nasal cycle, controlled by the autonomic "
                     "nervous system.",
        "gold_ids": ["breathe_out_of_one_nostril/Nasal_cycle_0.txt", "breathe_out_of_one_nostril/Nasal_cycle_1.txt",
                     "breathe_out_of_one_nostril/Nasal_cycle_2.txt"],
        "gold_ids_long": ["breathe_out_of_one_nostril/Nasal_cycle.txt"],
        "gold_answer": "Nothing is wrong: this is the nasal cycle, an alternating congestion of the two "
                       "sides of the nose every few hours.",
        "gpt4": "The user notices that airflow favours one nostril and switches sides after a few hours. "
                "This points to a normal physiological rhythm rather than a disease: the erectile tissue of "
                "the turbinates swells on one side under autonomic control while the other side "
                "decongests. Useful documents would define this alternating congestion, describe its "
                "control and timing, and discuss why it exists, for example letting each side recover or "
                "improving smell.",
    },
    {
        "id": "2",
        "query": "Why are most plants green instead of black? If the point of a leaf is to capture as much "
                 "sunlight as possible, wouldn't absorbing every colour be better?",
        "reasoning": "Leaves are green because chlorophyll reflects green light; photosynthesis uses the "
                     "red and blue parts of the spectrum.",
        "gold_ids": ["photosynthesis/Chlorophyll_0.txt", "photosynthesis/Photosynthesis_0.txt",
                     "photosynthesis/Photosynthesis_1.txt"],
        "gold_ids_long": ["photosynthesis/Chlorophyll.txt", "photosynthesis/Photosynthesis.txt"],
        "gold_answer": "Chlorophyll absorbs red and blue light and reflects green; absorbing everything "
                       "would add heat without helping the light reactions much.",
        "gpt4": "The question is about leaf colour and the efficiency of light capture. Leaves look green "
                "because the pigment chlorophyll absorbs mostly blue and red wavelengths and reflects "
                "green. To reason about whether black leaves would be better we need how photosynthesis "
                "converts light into chemical energy in the thylakoids, and the cost of absorbing extra "
                "energy as heat. Documents on chlorophyll absorption and on the light reactions answer it.",
    },
    {
        "id": "3",
        "query": "Why is yawning contagious? Just reading about yawning makes me yawn, and my dog seems to "
                 "yawn when I do.",
        "reasoning": "Contagious yawning is linked to empathy and occurs in several social species.",
        "gold_ids": ["why_do_we_yawn/Yawn_1.txt", "why_do_we_yawn/Yawn_0.txt"],
        "gold_ids_long": ["why_do_we_yawn/Yawn.txt"],
        "gold_answer": "Contagious yawning seems tied to empathy and social bonding; it appears in humans, "
                       "chimpanzees and dogs.",
        "gpt4": "We need to explain contagious yawning: why seeing, hearing or reading about a yawn "
                "triggers one, and why it crosses species to dogs. Relevant concepts are the yawn reflex "
                "itself, social mirroring and empathy, and which animals show the effect. A document "
                "describing contagious yawning in humans, chimpanzees and dogs would answer it.",
    },
    {
        "id": "4",
        "query": "What is actually happening in my body when I get hiccups, and why does holding my breath "
                 "sometimes make them stop?",
        "reasoning": "Hiccups are spasms of the diaphragm with closure of the glottis; breath holding "
                     "raises carbon dioxide and interrupts the reflex.",
        "gold_ids": ["hiccups/Hiccup_0.txt", "hiccups/Hiccup_1.txt", "hiccups/Hiccup_2.txt"],
        "gold_ids_long": ["hiccups/Hiccup.txt"],
        "gold_answer": "The diaphragm spasms and the vocal cords snap shut; raising carbon dioxide or "
                       "stimulating the vagus nerve can break the reflex loop.",
        "gpt4": "The question asks for the physiology of hiccups and the mechanism of a common remedy. A "
                "hiccup is an involuntary contraction of the diaphragm followed by closure of the vocal "
                "cords, controlled by a reflex arc through the phrenic and vagus nerves. Holding the "
                "breath raises carbon dioxide, which can suppress the reflex. Documents describing the "
                "spasm, its triggers and remedies are needed.",
    },
    {
        "id": "5",
        "query": "Why can't someone with type A blood receive a transfusion of type B blood, when both are "
                 "just human blood?",
        "reasoning": "Type A plasma contains anti-B antibodies that attack B antigens on donor red cells.",
        "gold_ids": ["blood_type/ABO_blood_group_system_0.txt", COLLISION_ID],
        "gold_ids_long": ["blood_type/ABO_blood_group_system.txt"],
        "gold_answer": "The recipient's anti-B antibodies bind the B antigens of the donated cells and "
                       "cause agglutination and haemolysis.",
        "gpt4": "The core issue is transfusion compatibility in the ABO system. Red blood cells carry A or "
                "B surface antigens, and a person's plasma contains antibodies against the antigen they "
                "lack, so type A plasma has anti-B antibodies. Giving type B cells triggers agglutination "
                "and a haemolytic reaction. Documents explaining the ABO antigens and the antibody "
                "reaction are relevant.",
    },
    {
        "id": "6",
        "query": "How do migrating birds find their way over thousands of kilometres, even at night and over "
                 "the open sea where there are no landmarks?",
        "reasoning": "Birds combine a sun compass, a star compass and a magnetic compass.",
        "gold_ids": ["bird_migration/Bird_migration_1.txt", "bird_migration/Magnetoreception_0.txt",
                     "bird_migration/Magnetoreception_1.txt"],
        "gold_ids_long": ["bird_migration/Bird_migration.txt", "bird_migration/Magnetoreception.txt"],
        "gold_answer": "They use the sun and star patterns, and a magnetic sense that probably relies on "
                       "cryptochrome in the eye.",
        "gpt4": "To answer we must list the navigation cues available to migrating birds when landmarks "
                "are absent: celestial cues (sun position, star patterns around the pole) and the Earth's "
                "magnetic field. Magnetoreception, possibly through light-dependent cryptochrome proteins "
                "in the retina and radical-pair chemistry, would explain orientation at night and over "
                "water. Experiments with robins in orientation cages are key evidence.",
    },
    {
        "id": "7",
        "query": "Why do I wake up at night with a painful cramp in my calf, and why does stretching the "
                 "leg make it go away?",
        "reasoning": "Nocturnal leg cramps relate to fatigue, dehydration and electrolytes; stretching "
                     "triggers a relaxation reflex.",
        "gold_ids": ["muscle_cramp/Cramp_0.txt", "muscle_cramp/Cramp_1.txt"],
        "gold_ids_long": ["muscle_cramp/Cramp.txt"],
        "gold_answer": "Night cramps are linked to tired muscles, dehydration and low electrolytes; "
                       "stretching activates tendon receptors that relax the muscle.",
        "gpt4": "The problem is nocturnal leg cramps and why stretching relieves them. A cramp is a sudden "
                "involuntary contraction of a muscle such as the calf. Known associations are muscle "
                "fatigue, dehydration and low potassium or magnesium. Stretching loads the tendon, whose "
                "receptors inhibit the contraction. Documents defining cramps and their causes and "
                "treatment are relevant.",
    },
]

# ============================================================================================
# Data: leetcode
# ============================================================================================

LEETCODE_DOCS = {
    1: "Two Sum. Given an array of integers nums and an integer target, return the indices of the two numbers "
       "that add up to target. Approach: one pass with a hash map from value to index; for each number look "
       "up target minus the number.",
    3: "Longest Substring Without Repeating Characters. Given a string s, find the length of the longest "
       "substring without repeating characters. Approach: sliding window with a map of last positions; move "
       "the left edge past the previous occurrence.",
    4: "Median of Two Sorted Arrays. Given two sorted arrays, return the median of the two arrays combined "
       "in O(log(m+n)) time. Approach: binary search on the partition of the shorter array.",
    11: "Container With Most Water. Given heights of vertical lines, find two lines that together with the "
        "x-axis form a container holding the most water. Approach: two pointers from both ends, always move "
        "the shorter line inwards.",
    15: "3Sum. Find all unique triplets in the array which give the sum of zero. Approach: sort, fix one "
        "element and run two pointers on the rest, skipping duplicates.",
    20: "Valid Parentheses. Given a string of brackets, determine whether every opening bracket is closed "
        "in the correct order. Approach: push opening brackets on a stack and pop on matching closers.",
    23: "Merge k Sorted Lists. Merge k sorted linked lists into one sorted list. Approach: a min-heap holding "
        "the current head of every list.",
    33: "Search in Rotated Sorted Array. A sorted array was rotated at an unknown pivot; find the index of "
        "target in O(log n). Approach: binary search, deciding which half is sorted at each step.",
    35: "Search Insert Position. Given a sorted array and a target, return the index where it is or would "
        "be inserted. Approach: lower-bound binary search.",
    39: "Combination Sum. Return all combinations of candidates that sum to target, where each number may "
        "be used many times. Approach: backtracking with a running remainder.",
    42: "Trapping Rain Water. Given n non-negative integers representing an elevation map where the width "
        "of each bar is 1, compute how much water it can trap after raining. Approach: two pointers keeping "
        "the maximum height seen from the left and from the right.",
    46: "Permutations. Given an array of distinct integers, return all possible permutations. Approach: "
        "backtracking, swapping elements into place.",
    51: "N-Queens. Place n queens on an n x n chessboard so that no two queens attack each other and return "
        "all distinct solutions. Approach: backtracking row by row with sets of used columns and diagonals.",
    53: "Maximum Subarray. Find the contiguous subarray with the largest sum. Approach: Kadane's algorithm, "
        "keeping the best sum ending at the current position.",
    56: "Merge Intervals. Given an array of intervals, merge all overlapping intervals and return the "
        "non-overlapping intervals that cover all the input. Approach: sort by start and extend the last "
        "merged interval while the next one overlaps it.",
    57: "Insert Interval. Insert a new interval into a sorted list of non-overlapping intervals, merging "
        "where necessary. Approach: copy the intervals before it, merge the overlapping ones, copy the rest.",
    76: "Minimum Window Substring. Given strings s and t, return the shortest substring of s that contains "
        "every character of t. Approach: sliding window with character counts; expand the right edge, then "
        "shrink the left edge while the window stays valid.",
    70: "Climbing Stairs. You can climb 1 or 2 steps at a time; in how many distinct ways can you reach the "
        "top of n stairs? Approach: dynamic programming, ways(n) = ways(n-1) + ways(n-2).",
    72: "Edit Distance. Return the minimum number of insertions, deletions and replacements to convert one "
        "word into another. Approach: two-dimensional dynamic programming over prefixes.",
    78: "Subsets. Return all possible subsets of a set of distinct integers. Approach: backtracking or "
        "iterate over bit masks.",
    84: "Largest Rectangle in Histogram. Given bar heights of a histogram, find the area of the largest "
        "rectangle. Approach: a monotonic increasing stack of indices; pop to compute widths.",
    121: "Best Time to Buy and Sell Stock. Given daily prices, find the maximum profit from one buy and one "
         "later sell. Approach: track the minimum price so far.",
    127: "Word Ladder. Find the length of the shortest transformation sequence from beginWord to endWord, "
         "changing one letter at a time through words in a dictionary. Approach: breadth-first search.",
    141: "Linked List Cycle. Determine whether a linked list has a cycle. Approach: Floyd's slow and fast "
         "pointers.",
    146: "LRU Cache. Design a data structure that follows the constraints of a least recently used cache, "
         "with get and put in O(1) time. Approach: a hash map pointing into a doubly linked list ordered by "
         "recency.",
    155: "Min Stack. Design a stack that supports push, pop, top and retrieving the minimum element in "
         "constant time. Approach: store the running minimum alongside each element.",
    198: "House Robber. Houses along a street hold money; adjacent houses cannot both be robbed. Return the "
         "maximum amount. Approach: dynamic programming, best(i) = max(best(i-1), best(i-2) + money[i]).",
    200: "Number of Islands. Given an m x n grid of '1's (land) and '0's (water), return the number of "
         "islands. Approach: depth-first or breadth-first search flooding each island.",
    206: "Reverse Linked List. Reverse a singly linked list. Approach: iterate and flip next pointers.",
    207: "Course Schedule. There are numCourses courses and prerequisite pairs; return whether you can "
         "finish all courses. Approach: topological sort with in-degrees (Kahn's algorithm) to detect a "
         "cycle in the directed graph.",
    208: "Implement Trie (Prefix Tree). Design a trie with insert, search and startsWith operations. "
         "Approach: nodes with child maps and an end-of-word flag.",
    215: "Kth Largest Element in an Array. Return the kth largest element. Approach: a min-heap of size k "
         "or quickselect.",
    238: "Product of Array Except Self. Return an array where each element is the product of all other "
         "elements, without division. Approach: prefix products from the left and suffix products from "
         "the right.",
    253: "Meeting Rooms II. Given meeting time intervals, return the minimum number of conference rooms "
         "required. Approach: sort by start time and keep a min-heap of end times.",
    300: "Longest Increasing Subsequence. Return the length of the longest strictly increasing "
         "subsequence. Approach: dynamic programming, or patience sorting with binary search.",
    322: "Coin Change. Return the fewest coins needed to make up an amount, or -1. Approach: bottom-up "
         "dynamic programming over amounts.",
    347: "Top K Frequent Elements. Return the k most frequent elements. Approach: count with a hash map, "
         "then bucket sort by frequency or use a heap.",
    407: "Trapping Rain Water II. Given a 2D elevation map, compute the volume of water it can trap after "
         "raining. Approach: a min-heap over the boundary cells, expanding inwards.",
    560: "Subarray Sum Equals K. Count the contiguous subarrays whose sum equals k. Approach: prefix sums "
         "with a hash map of counts.",
    684: "Redundant Connection. A tree had one extra edge added; return an edge whose removal makes the "
         "graph a tree again. Approach: union-find, the first edge joining two already connected nodes "
         "closes a cycle.",
    721: "Accounts Merge. Merge accounts that share an email address. Approach: union-find over emails.",
    739: "Daily Temperatures. For each day, return how many days you must wait for a warmer temperature. "
         "Approach: a monotonic decreasing stack of indices.",
    743: "Network Delay Time. Given travel times of directed edges, return how long it takes for a signal "
         "from node k to reach all nodes. Approach: Dijkstra's shortest paths with a priority queue.",
    787: "Cheapest Flights Within K Stops. Given flights with prices, find the cheapest price from src to "
         "dst with at most k stops. Approach: Bellman-Ford relaxation for k + 1 rounds.",
    875: "Koko Eating Bananas. Find the minimum eating speed that finishes all piles within h hours. "
         "Approach: binary search on the answer.",
    994: "Rotting Oranges. In a grid, rotten oranges rot their fresh neighbours every minute; return the "
         "minutes until no fresh orange remains. Approach: multi-source breadth-first search over the grid.",
    1143: "Longest Common Subsequence. Return the length of the longest common subsequence of two strings. "
          "Approach: two-dimensional dynamic programming.",
}


def lc(n: int) -> str:
    return f"leetcode/leetcode_{n}.txt"


LEETCODE_QUERIES = [
    {
        "id": "0",
        "query": "You are given the heights of a row of walls, each one unit wide. After a heavy rain, water "
                 "collects between the walls. Compute the total amount of rain water that stays trapped.",
        "gold": [11, 238, 84], "excluded": [42, 407, 42],
        "gpt4": "This is a trapping-water problem on a one-dimensional elevation profile. The water above "
                "each position equals the minimum of the highest wall to its left and to its right, minus "
                "its own height. Useful techniques: prefix and suffix maxima, two pointers moving inwards "
                "from both ends, or a monotonic stack over bar heights. Similar problems: container with "
                "most water, product of array except self, largest rectangle in a histogram.",
    },
    {
        "id": "1",
        "query": "There are n cities connected by flights, each with a price. Find the cheapest route from "
                 "the source city to the destination that makes no more than k stops, or return -1.",
        "gold": [743], "excluded": [787],
        "gpt4": "The task is a constrained shortest path on a weighted directed graph. Algorithms: "
                "Bellman-Ford limited to k+1 relaxation rounds, or Dijkstra with a priority queue keyed by "
                "cost and carrying the number of stops. Related problems compute shortest signal delays "
                "through a network with Dijkstra's algorithm.",
    },
    {
        "id": "2",
        "query": "Given a text, find the length of the longest stretch of consecutive characters in which no "
                 "letter appears twice.",
        "gold": [76, 560], "excluded": [3],
        "gpt4": "We need the longest window without duplicate characters. Technique: a sliding window with "
                "two indices and a hash map recording the last position or count of each character, "
                "shrinking the window when a repeat appears. Related problems: the shortest window that "
                "contains every character of another string, solved with the same expanding and shrinking "
                "window, and counting subarrays with a given sum using prefix sums in a hash map.",
    },
    {
        "id": "3",
        "query": "A burglar wants to rob houses on a street, but two neighbouring houses cannot both be "
                 "robbed in one night or the alarm goes off. Given the cash in each house, what is the most "
                 "he can steal?",
        "gold": [70, 322], "excluded": [198],
        "gpt4": "This is an optimisation over a sequence with a no-two-adjacent constraint, a classic "
                "one-dimensional dynamic programming problem: best(i) = max(best(i-1), best(i-2) + "
                "value(i)). Related dynamic programming problems: counting ways to climb stairs with steps "
                "of one or two, and the minimum number of coins for an amount.",
    },
    {
        "id": "4",
        "query": "A map is given as a grid where 1 is land and 0 is sea. Land cells connected horizontally or "
                 "vertically form an island. How many islands are there?",
        "gold": [994], "excluded": [200],
        "gpt4": "Counting connected components in a grid graph. Approach: iterate over cells and flood fill "
                "each unvisited land cell with depth-first or breadth-first search. Grid BFS problems such "
                "as rotting oranges spreading minute by minute use the same traversal.",
    },
    {
        "id": "5",
        "query": "A university has n courses, and some courses must be taken before others. Given the list "
                 "of prerequisite pairs, decide whether a student can complete every course.",
        "gold": [684], "excluded": [207],
        "gpt4": "The prerequisites form a directed graph, and all courses can be finished exactly when the "
                "graph has no cycle. Approaches: topological sorting with in-degrees, or DFS with colours. "
                "Cycle detection with union-find in an undirected graph, such as finding a redundant edge, "
                "is closely related.",
    },
    {
        "id": "6",
        "query": "Build a key-value cache with a fixed capacity. Reading or writing a key must take constant "
                 "time, and when the cache is full the entry that was used least recently is evicted.",
        "gold": [155, 208], "excluded": [146],
        "gpt4": "This is a data-structure design problem: O(1) lookup plus O(1) recency updates. The "
                "standard design combines a hash map with a doubly linked list. Other design problems that "
                "augment a basic structure are a stack that also returns its minimum in constant time and "
                "a prefix tree with insert and search operations.",
    },
    {
        "id": "7",
        "query": "You have a calendar of time ranges, some of which overlap. Combine every group of "
                 "overlapping ranges into a single range and return the resulting list.",
        "gold": [57, 253], "excluded": [56, 15],
        "gpt4": "An interval problem: sort the ranges by start time and sweep, extending the current range "
                "while the next one overlaps it. Related interval problems: inserting a new interval into a "
                "sorted list, and computing the number of meeting rooms with a heap of end times.",
    },
]

# ============================================================================================
# Data: theoremqa_theorems (numeric-string document ids, as upstream)
# ============================================================================================

THEOREM_DOCS = [
    ("18695", "Pigeonhole principle: if n items are put into m containers with n > m, then at least one "
              "container must contain more than one item."),
    ("18696", "Generalized pigeonhole principle: if N objects are placed into k boxes, then at least one box "
              "contains at least the ceiling of N/k objects."),
    ("998", "Fermat's little theorem: if p is a prime number and a is an integer not divisible by p, then a "
            "raised to the power p-1 is congruent to 1 modulo p."),
    ("1020", "Fermat's little theorem: if p is a prime number and a is an integer not divisible by p, then a "
             "raised to the power p-1 is congruent to 1 modulo p."),
    ("2301", "Euler's theorem: if a and n are coprime positive integers, then a to the power phi(n) is "
             "congruent to 1 modulo n, where phi is Euler's totient function."),
    ("2302", "Chinese remainder theorem: if the moduli n1, ..., nk are pairwise coprime, then a system of "
             "congruences x = ai (mod ni) has a unique solution modulo their product."),
    ("2310", "Wilson's theorem: a natural number p > 1 is prime if and only if (p-1)! is congruent to -1 "
             "modulo p."),
    ("2311", "Bezout's identity: for integers a and b with greatest common divisor d, there exist integers x "
             "and y such that ax + by = d."),
    ("2320", "Fundamental theorem of arithmetic: every integer greater than 1 can be written as a product of "
             "prime numbers in a way that is unique up to the order of the factors."),
    ("3100", "Bayes' theorem: P(A|B) = P(B|A) P(A) / P(B). It updates the probability of a hypothesis A "
             "after observing evidence B."),
    ("3101", "Law of total probability: if B1, ..., Bn partition the sample space, then P(A) is the sum over "
             "i of P(A|Bi) P(Bi)."),
    ("3102", "Binomial theorem: (x + y)^n equals the sum over k from 0 to n of C(n, k) x^(n-k) y^k."),
    ("3103", "Inclusion-exclusion principle: the size of a union of finite sets equals the sum of the sizes "
             "of the sets, minus the sizes of all pairwise intersections, plus the triple intersections, and "
             "so on."),
    ("4200", "Pythagorean theorem: in a right triangle the square of the hypotenuse equals the sum of the "
             "squares of the other two sides."),
    ("4201", "Law of cosines: for a triangle with sides a, b, c and angle C opposite c, c^2 = a^2 + b^2 - "
             "2ab cos C."),
    ("4202", "Law of sines: in any triangle, a / sin A = b / sin B = c / sin C, which equals the diameter of "
             "the circumscribed circle."),
    ("5300", "Mean value theorem: if f is continuous on [a, b] and differentiable on (a, b), then there is a "
             "point c in (a, b) where f'(c) = (f(b) - f(a)) / (b - a)."),
    ("5301", "Intermediate value theorem: a continuous function on [a, b] takes every value between f(a) and "
             "f(b) somewhere in the interval."),
    ("5302", "Rolle's theorem: if f is continuous on [a, b], differentiable on (a, b) and f(a) = f(b), then "
             "f'(c) = 0 for some c in (a, b)."),
    ("5303", "Fundamental theorem of calculus: if F is an antiderivative of a continuous function f on [a, b], "
             "then the integral of f from a to b equals F(b) - F(a)."),
    ("5304", "L'Hopital's rule: if f and g both tend to 0 or both to infinity, the limit of f/g equals the "
             "limit of f'/g' when the latter exists."),
    ("5305", "Taylor's theorem: a function with n+1 derivatives near a equals its degree-n Taylor polynomial "
             "at a plus a remainder term of order (x-a)^(n+1)."),
    ("6400", "Cauchy-Schwarz inequality: for vectors u and v in an inner product space, |<u, v>| is at most "
             "the product of the norms of u and v."),
    ("6401", "AM-GM inequality: the arithmetic mean of non-negative real numbers is at least their geometric "
             "mean, with equality only when all numbers are equal."),
    ("6402", "Triangle inequality: for any vectors x and y, the norm of x + y is at most the norm of x plus "
             "the norm of y."),
    ("7500", "Green's theorem: the line integral of P dx + Q dy around a positively oriented simple closed "
             "curve equals the double integral of (dQ/dx - dP/dy) over the enclosed region."),
    ("7501", "Divergence theorem: the outward flux of a vector field through a closed surface equals the "
             "volume integral of the divergence over the region inside."),
    ("7502", "Stokes' theorem: the circulation of a vector field around the boundary of a surface equals the "
             "flux of its curl through the surface."),
    ("8600", "Cayley-Hamilton theorem: every square matrix satisfies its own characteristic polynomial; for "
             "a 2x2 matrix A, A^2 - tr(A) A + det(A) I = 0."),
    ("8601", "Rank-nullity theorem: for a linear map from an n-dimensional space, the rank plus the "
             "dimension of the kernel equals n."),
    ("8602", "Spectral theorem: every real symmetric matrix can be diagonalised by an orthogonal matrix, and "
             "its eigenvalues are real."),
    ("9700", "Central limit theorem: the mean of n independent identically distributed random variables with "
             "mean mu and variance sigma^2 is approximately normal with mean mu and variance sigma^2 / n for "
             "large n."),
    ("9701", "Law of large numbers: the sample average of independent identically distributed random "
             "variables converges to the expected value as the number of samples grows."),
    ("9702", "Markov's inequality: for a non-negative random variable X and a > 0, P(X >= a) is at most "
             "E[X] / a."),
    ("9703", "Chebyshev's inequality: for a random variable with mean mu and variance sigma^2, the "
             "probability that |X - mu| >= k sigma is at most 1 / k^2."),
    ("10800", "Lagrange's theorem: the order of every subgroup of a finite group divides the order of the "
              "group."),
    ("10801", "Euler's formula for planar graphs: a connected planar graph with V vertices, E edges and F "
              "faces satisfies V - E + F = 2."),
    ("10802", "Handshaking lemma: in any finite graph the sum of the vertex degrees equals twice the number "
              "of edges, so the number of odd-degree vertices is even."),
    ("10803", "Ramsey number R(3,3) = 6: in any colouring of the edges of the complete graph on six vertices "
              "with two colours there is a monochromatic triangle."),
    ("10804", "Catalan numbers: C_n = (2n choose n) / (n + 1) counts balanced parenthesis strings, binary "
              "trees with n nodes and triangulations of a polygon."),
    ("10805", "Burnside's lemma: the number of orbits of a group acting on a set equals the average number "
              "of points fixed by the group elements."),
    ("11900", "Nyquist-Shannon sampling theorem: a signal containing no frequencies higher than B hertz is "
              "completely determined by samples taken at a rate greater than 2B per second."),
    ("11901", "Shannon-Hartley theorem: the capacity of a channel with bandwidth B and signal-to-noise ratio "
              "S/N is C = B log2(1 + S/N) bits per second."),
    ("11902", "Kraft inequality: a prefix code with codeword lengths l1, ..., ln over a binary alphabet "
              "exists if and only if the sum of 2^(-li) is at most 1."),
    ("11903", "Little's law: the long-run average number of items in a stable queueing system equals the "
              "arrival rate multiplied by the average time an item spends in the system."),
    ("11904", "Kirchhoff's current law: the sum of currents entering a node of an electrical circuit equals "
              "the sum of currents leaving it."),
]

THEOREM_QUERIES = [
    {
        "id": "TheoremQA_jianyu_xu/pigeonhole_3.json",
        "query": "Mary is baking exactly 10 cookies, and each cookie is one of three shapes: triangle, circle "
                 "or square. What is the minimum number of cookies that must share the same shape?",
        "reasoning": "Reasoning for Pigeonhole Principle: ten cookies in three shape classes force a class "
                     "of at least ceiling(10/3) = 4.",
        "gold": ["18696", "18695"],
        "gpt4": "We distribute 10 objects into 3 categories and ask for the guaranteed size of the largest "
                "category. The generalized pigeonhole principle gives at least the ceiling of 10/3, which "
                "is 4. The relevant theorem is the pigeonhole principle in its general form.",
    },
    {
        "id": "TheoremQA_wenhuchen/fermat_little_1.json",
        "query": "What is the remainder when 3 raised to the power 100 is divided by 7?",
        "reasoning": "Reasoning for Fermat's Little Theorem: 3^6 = 1 mod 7, so 3^100 = 3^4 = 4 mod 7.",
        "gold": ["1020", "2301", "1020"],  # "1020" listed twice, as upstream sometimes does
        "gpt4": "We need a modular exponentiation with a prime modulus. Since 7 is prime and does not "
                "divide 3, Fermat's little theorem gives 3^6 congruent to 1 mod 7; 100 = 6 * 16 + 4, so the "
                "answer is 3^4 mod 7 = 4. Euler's theorem generalises this to composite moduli.",
    },
    {
        "id": "TheoremQA_xinyi/bayes_2.json",
        "query": "A disease affects 1% of a population. A test detects it 95% of the time and gives a false "
                 "positive 5% of the time. If a person tests positive, what is the probability they have the "
                 "disease?",
        "reasoning": "Reasoning for Bayes' theorem: the posterior uses the prior 0.01 and the total "
                     "probability of a positive test.",
        "gold": ["3100", "3101"],
        "gpt4": "This asks for a conditional probability reversed from the given one: P(disease | positive) "
                "from P(positive | disease). Bayes' theorem requires the denominator P(positive), computed "
                "with the law of total probability over diseased and healthy people: 0.95 * 0.01 + 0.05 * "
                "0.99. The answer is about 0.16.",
    },
    {
        "id": "TheoremQA_mingyin/cayley_hamilton.json",
        "query": "Let A be the 2 by 2 matrix with rows (1, 2) and (3, 4). Write A cubed as a linear "
                 "combination of A and the identity matrix.",
        "reasoning": "Reasoning for Cayley-Hamilton: A^2 = 5A + 2I from the characteristic polynomial.",
        "gold": ["8600"],
        "gpt4": "Powers of a matrix can be reduced with its characteristic polynomial. For this matrix the "
                "trace is 5 and the determinant is -2, so by the Cayley-Hamilton theorem A^2 = 5A + 2I, and "
                "A^3 = 5A^2 + 2A = 27A + 10I. The key theorem states that a matrix satisfies its own "
                "characteristic polynomial.",
    },
    {
        "id": "TheoremQA_maxku/signalprocessing_sampling.json",
        "query": "An audio signal contains frequencies up to 20 kHz. What is the minimum sampling rate needed "
                 "to reconstruct it without aliasing?",
        "reasoning": "Reasoning for the sampling theorem: the rate must exceed twice the highest frequency.",
        "gold": ["11900"],
        "gpt4": "The question concerns digitising a band-limited signal. The Nyquist-Shannon sampling "
                "theorem states the sampling rate must exceed twice the highest frequency present, so more "
                "than 40 kHz. Aliasing occurs below that rate.",
    },
    {
        "id": "TheoremQA_jianyu_xu/euler_graph_2.json",
        "query": "A connected planar graph has 10 vertices and 15 edges. How many faces does a planar drawing "
                 "of it have, counting the outer face?",
        "reasoning": "Reasoning for Euler's formula: V - E + F = 2 gives F = 7.",
        "gold": ["10801"],
        "gpt4": "We need the number of faces of a planar embedding given vertices and edges. Euler's formula "
                "for connected planar graphs, V - E + F = 2, gives F = 2 - 10 + 15 = 7. The relevant "
                "theorem relates vertices, edges and faces.",
    },
    {
        "id": "TheoremQA_xueguangma/mean_value_theorem.json",
        "query": "A car travels 180 kilometres in 2 hours along a smooth road. Show that at some moment its "
                 "speedometer read exactly 90 kilometres per hour.",
        "reasoning": "Reasoning for the mean value theorem: the average rate of change is attained as an "
                     "instantaneous rate.",
        "gold": ["5300"],
        "gpt4": "Position is a differentiable function of time, and the average speed over the trip is 90 "
                "km/h. The mean value theorem says the derivative equals the average rate of change at some "
                "interior point, so the instantaneous speed was 90 km/h at some moment. Rolle's theorem is "
                "the special case with equal endpoint values.",
    },
    {
        "id": "TheoremQA_elainewan/econ_clt.json",
        "query": "Each of 100 independent measurements has mean 5 and variance 4. Approximately what is the "
                 "probability that their average exceeds 5.4?",
        "reasoning": "Reasoning for the central limit theorem: the average is approximately normal with "
                     "standard deviation 0.2.",
        "gold": ["9700"],
        "gpt4": "The sample mean of many independent identically distributed variables is approximately "
                "normal by the central limit theorem, with mean 5 and standard deviation 2 / sqrt(100) = "
                "0.2. The event average > 5.4 is two standard deviations above the mean, with probability "
                "about 0.023.",
    },
]

# ============================================================================================
# Build the rows
# ============================================================================================


def biology_rows() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    documents, long_documents = [], []
    for page, chunks in BIOLOGY_PAGES:
        for i, text in enumerate(chunks):
            if f"{page}_{i}.txt" == COLLISION_ID:  # an off-topic row with the same id comes first
                documents.append({"id": COLLISION_ID, "content": COLLISION_EARLY_TEXT})
            documents.append({"id": f"{page}_{i}.txt", "content": text})
        title = page.split("/")[1].replace("_", " ")
        body = LONG_PREFIX.get(page, "") + " ".join(chunks) + LONG_SUFFIX.get(page, "")
        long_documents.append({"id": f"{page}.txt", "content": f"{title}\n\n{body}"})
    examples, gpt4 = [], []
    for q in BIOLOGY_QUERIES:
        row = {
            "query": q["query"],
            "reasoning": q["reasoning"],
            "id": q["id"],
            "excluded_ids": ["N/A"],
            "gold_ids_long": q["gold_ids_long"],
            "gold_ids": q["gold_ids"],
            "gold_answer": q["gold_answer"],
        }
        examples.append(row)
        gpt4.append(row | {"query": q["gpt4"]})
    return examples, documents, long_documents, gpt4


def leetcode_rows() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    documents = [{"id": lc(n), "content": text} for n, text in LEETCODE_DOCS.items()]
    examples, gpt4 = [], []
    for q in LEETCODE_QUERIES:
        row = {
            "query": q["query"],
            "reasoning": "empty",
            "id": q["id"],
            "excluded_ids": [lc(n) for n in q["excluded"]],
            "gold_ids_long": ["N/A"],
            "gold_ids": [lc(n) for n in q["gold"]],
            "gold_answer": "N/A",
        }
        examples.append(row)
        gpt4.append(row | {"query": q["gpt4"]})
    return examples, documents, [], gpt4


def theorem_rows() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    documents = [{"id": i, "content": text} for i, text in THEOREM_DOCS]
    examples, gpt4 = [], []
    for q in THEOREM_QUERIES:
        row = {
            "query": q["query"],
            "reasoning": q["reasoning"],
            "id": q["id"],
            "excluded_ids": [],
            "gold_ids_long": ["N/A"],
            "gold_ids": q["gold"],
            "gold_answer": "N/A",
        }
        examples.append(row)
        gpt4.append(row | {"query": q["gpt4"]})
    return examples, documents, [], gpt4


def build_dataset() -> dict[str, dict[str, list[dict]]]:
    """{config: {task: rows}}; long_documents only for biology (as upstream)."""
    data: dict[str, dict[str, list[dict]]] = {c: {} for c in CONFIGS}
    for task, make in (("biology", biology_rows), ("leetcode", leetcode_rows), ("theoremqa_theorems", theorem_rows)):
        examples, documents, long_documents, gpt4 = make()
        data["examples"][task] = examples
        data["documents"][task] = documents
        data["gpt4_reason"][task] = gpt4
        if long_documents:
            data["long_documents"][task] = long_documents
    validate(data)
    return data


def validate(data) -> None:
    """The traps must be present, and the invariants BRIGHT asserts must hold."""
    for task, examples in data["examples"].items():
        doc_ids = {d["id"] for d in data["documents"][task]}
        long_ids = {d["id"] for d in data["long_documents"].get(task, [])}
        assert len({e["id"] for e in examples}) == len(examples), task
        for e in examples:
            excluded = set(e["excluded_ids"]) - {"N/A"}
            assert not excluded & set(e["gold_ids"]), (task, e["id"])
            assert set(e["gold_ids"]) <= doc_ids, (task, e["id"], set(e["gold_ids"]) - doc_ids)
            assert excluded <= doc_ids, (task, e["id"])
            if long_ids:
                assert set(e["gold_ids_long"]) <= long_ids, (task, e["id"])
    bio = data["documents"]["biology"]
    rows = [d for d in bio if d["id"] == COLLISION_ID]
    assert len(rows) == 2 and rows[0]["content"] == COLLISION_EARLY_TEXT and rows[1]["content"] != rows[0]["content"]
    assert any(COLLISION_ID in e["gold_ids"] for e in data["examples"]["biology"])
    assert sum(d["content"] == BOILERPLATE for d in bio) >= 3
    texts = [d["content"] for d in bio]
    assert texts.count(texts[[d["id"] for d in bio].index("insects_attracted_to_light/Phototaxis_2.txt")]) == 2
    assert b"insects_attracted_to_light/moth_1.txt" > b"insects_attracted_to_light/Phototaxis_2.txt"
    thm = {d["id"]: d["content"] for d in data["documents"]["theoremqa_theorems"]}
    assert thm["998"] == thm["1020"] and b"998" > b"1020"
    assert any(len(e["gold_ids"]) != len(set(e["gold_ids"])) for e in data["examples"]["theoremqa_theorems"])
    leet = data["examples"]["leetcode"]
    assert any(len(e["excluded_ids"]) != len(set(e["excluded_ids"])) for e in leet)
    for e, q in zip(leet, LEETCODE_QUERIES):
        assert lc(q["excluded"][0]) in e["excluded_ids"]  # the query's own problem
    for task in TASKS:
        assert [e["id"] for e in data["gpt4_reason"][task]] == [e["id"] for e in data["examples"][task]]
        for a, b in zip(data["examples"][task], data["gpt4_reason"][task]):
            assert len(b["query"]) > len(a["query"]) and {k: v for k, v in a.items() if k != "query"} == {
                k: v for k, v in b.items() if k != "query"
            }


# ============================================================================================
# Parquet
# ============================================================================================


def write_parquet(data) -> list[Path]:
    written = []
    for config, tasks in data.items():
        schema = DOCUMENT_SCHEMA if config in ("documents", "long_documents") else EXAMPLE_SCHEMA
        schema = schema.with_metadata(hf_metadata(schema))
        folder = HUB / config
        folder.mkdir(parents=True, exist_ok=True)
        for task, rows in tasks.items():
            path = folder / f"{task}-00000-of-00001.parquet"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
            written.append(path)
            # read back: same rows, the declared schema, snappy
            back = pq.read_table(path)
            assert back.to_pylist() == rows and back.schema.equals(schema, check_metadata=False)
            meta = pq.ParquetFile(path).metadata
            assert all(meta.row_group(0).column(i).compression == "SNAPPY" for i in range(meta.num_columns))
    return written


# ============================================================================================
# Reference scores
# ============================================================================================


def corpus_stats(docs: list[dict], tokenizer) -> dict:
    ids = [d["id"] for d in docs]
    texts = list(dict.fromkeys(d["content"] for d in docs))
    over = sum(len(tokenizer(t)["input_ids"]) > MAX_SEQ_LENGTH for t in texts)
    return {
        "rows": len(docs),
        "distinct_ids": len(set(ids)),
        "id_collisions": len(ids) - len(set(ids)),
        "distinct_texts": len(texts),
        "over_max_length": over,
    }


def encode(st: SentenceTransformer, texts: list[str]) -> np.ndarray:
    emb = st.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    assert emb.dtype == np.float32
    return emb


def pytrec_order(run_q: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(run_q.items(), key=lambda t: (float(np.float32(t[1])), t[0].encode()), reverse=True)


def evaluate_task(
    st,
    examples: list[dict],
    docs: list[dict],
    gold_field: str,
    cache: dict,
    first_id_wins: bool = False,
    apply_exclusions: bool = True,
    ties_ascending: bool = False,
) -> dict:
    """BRIGHT's procedure; the three flags emulate common mistakes (only for "counterfactuals")."""
    texts = list(dict.fromkeys(d["content"] for d in docs))
    missing = [t for t in texts if t not in cache]
    if missing:
        cache.update(zip(missing, encode(st, missing)))
    doc_matrix = np.stack([cache[t] for t in texts])
    text_index = {t: i for i, t in enumerate(texts)}
    queries = [e["query"] for e in examples]
    scores = encode(st, queries) @ doc_matrix.T  # float32 [queries, distinct texts]
    assert scores.dtype == np.float32

    run, qrels = {}, {}
    for e, row in zip(examples, scores):
        cur = {}
        for d in docs:  # corpus order: a later row with the same id overwrites
            if not (first_id_wins and d["id"] in cur):
                cur[d["id"]] = float(row[text_index[d["content"]]])
        for did in e["excluded_ids"] if apply_exclusions else []:
            if did != "N/A":
                cur.pop(did, None)
        top = sorted(cur.items(), key=lambda t: t[1], reverse=True)[:TOP_K]
        run[e["id"]] = dict(top)
        if ties_ascending:  # feed pytrec_eval a rank-encoded run in (score desc, id ASC) order
            order = sorted(top, key=lambda t: (-np.float32(t[1]), t[0].encode()))
            run[e["id"]] = {d: float(len(order) - i) for i, (d, _) in enumerate(order)}
        qrels[e["id"]] = {gid: 1 for gid in e[gold_field]}
        excluded = set(e["excluded_ids"]) - {"N/A"}
        assert not excluded & set(qrels[e["id"]])
        assert not apply_exclusions or not excluded & set(run[e["id"]])

    per_query = pytrec_eval.RelevanceEvaluator(qrels, PYTREC_MEASURES).evaluate(run)
    assert set(per_query) == set(run)
    per_query = {qid: {m: per_query[qid][m] for m in MEASURES} for qid in run}  # fixed key order
    mean = {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in MEASURES}
    top10 = {qid: [[d, s] for d, s in pytrec_order(run[qid])[:10]] for qid in run}
    return {"evaluated_queries": len(per_query), "mean": mean, "per_query": per_query, "top10": top10,
            "_gap": min_gold_gap(run, qrels)}


def min_gold_gap(run: dict, qrels: dict) -> float:
    """Smallest |score difference| between a gold and a non-gold document that carry different
    scores: how far the reference is from a rank swap caused by float rounding."""
    gap = float("inf")
    for qid, docs in run.items():
        gold = [s for d, s in docs.items() if d in qrels[qid]]
        other = [s for d, s in docs.items() if d not in qrels[qid]]
        for g in gold:
            for o in other:
                if g != o:
                    gap = min(gap, abs(g - o))
    return gap


SETTINGS = {
    "short": ("examples", "documents", "gold_ids", TASKS),
    "long": ("examples", "long_documents", "gold_ids_long", ["biology"]),
    "gpt4_reason": ("gpt4_reason", "documents", "gold_ids", TASKS),
}


def reference(data, model_dir: Path) -> tuple[dict, dict, dict]:
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if digest != MINILM_SHA256:
        sys.exit(f"{model_dir}/model.safetensors has sha256 {digest}, expected {MINILM_SHA256}")
    st = SentenceTransformer(str(model_dir), device="cpu")
    assert st.max_seq_length == MAX_SEQ_LENGTH
    tokenizer = st.tokenizer

    tasks = {}
    for task in TASKS:
        s = corpus_stats(data["documents"][task], tokenizer)
        entry = {
            "queries": len(data["examples"][task]),
            "document_rows": s["rows"],
            "distinct_ids": s["distinct_ids"],
            "id_collisions": s["id_collisions"],
            "distinct_texts": s["distinct_texts"],
            "documents_over_max_length": s["over_max_length"],
        }
        if task in data["long_documents"]:
            ls = corpus_stats(data["long_documents"][task], tokenizer)
            entry |= {
                "long_document_rows": ls["rows"],
                "long_distinct_ids": ls["distinct_ids"],
                "long_id_collisions": ls["id_collisions"],
                "long_distinct_texts": ls["distinct_texts"],
                "long_documents_over_max_length": ls["over_max_length"],
            }
        tasks[task] = entry

    cache: dict[str, np.ndarray] = {}
    settings, gaps = {}, {}
    for name, (qconfig, dconfig, gold_field, task_list) in SETTINGS.items():
        results = {}
        for task in task_list:
            results[task] = evaluate_task(st, data[qconfig][task], data[dconfig][task], gold_field, cache)
            gaps[(name, task)] = results[task].pop("_gap")
        settings[name] = {
            "queries_config": qconfig,
            "documents_config": dconfig,
            "gold_field": gold_field,
            "tasks": results,
            "mean_over_tasks": {m: sum(r["mean"][m] for r in results.values()) / len(results) for m in MEASURES},
        }

    # What three common mistakes would give (nDCG@10 task means, short setting): a Rust test can
    # assert that its result is NOT these.
    def ndcg(task, **flags):
        ex, docs = data["examples"][task], data["documents"][task]
        return evaluate_task(st, ex, docs, "gold_ids", cache, **flags)["mean"]["ndcg_cut_10"]

    counterfactuals = {
        "setting": "short",
        "measure": "ndcg_cut_10",
        "first_row_wins_on_duplicate_ids": {"biology": ndcg("biology", first_id_wins=True)},
        "exclusions_ignored": {"leetcode": ndcg("leetcode", apply_exclusions=False)},
        "ties_by_docid_ascending": {t: ndcg(t, ties_ascending=True) for t in ("biology", "theoremqa_theorems")},
    }
    for key in ("first_row_wins_on_duplicate_ids", "exclusions_ignored", "ties_by_docid_ascending"):
        for task, value in counterfactuals[key].items():
            assert abs(value - settings["short"]["tasks"][task]["mean"]["ndcg_cut_10"]) > 1e-3, (key, task)

    # Embedding each row separately (batched with the others, no de-duplication) must give the
    # same vectors to ~1e-6; the reference shares one vector per distinct text so that identical
    # texts get bit-identical scores.
    rows = [d["content"] for d in data["documents"]["biology"]]
    diff = float(np.abs(encode(st, rows) - np.stack([cache[t] for t in rows])).max())
    assert diff < 1e-5, diff
    return tasks, counterfactuals, settings | {"_gaps": gaps, "_dedup_diff": diff}


# ============================================================================================
# Output
# ============================================================================================


def versions() -> dict:
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "pyarrow": pa.__version__,
        "pytrec_eval_terrier": version("pytrec-eval-terrier"),
        "numpy": np.__version__,
    }


def write_readme(data, tasks: dict) -> None:
    lines = [
        "# BRIGHT fixture (`xlangai/BRIGHT` layout)",
        "",
        "Generated by `scripts/make_bright_fixture.py`; do not edit by hand. A tiny hand-written dataset",
        "in exactly the Hugging Face layout of `xlangai/BRIGHT`: one folder per config, one parquet shard",
        "per task (the split name is the task name), `<config>/<task>-00000-of-00001.parquet`.",
        "The reference scores are in `fixtures/goldens/bright-fixture-minilm.json`.",
        "",
        "Parquet: pyarrow defaults (snappy, one row group, lists written Parquet-compliant as",
        "`list<element: string>`), with the `huggingface` schema metadata `datasets` adds",
        "(`Value(\"string\")`, `Sequence(Value(\"string\"))`).",
        "",
        "| config | columns |",
        "|---|---|",
        "| `examples`, `gpt4_reason` | `query` string, `reasoning` string, `id` string, `excluded_ids` list<string>, "
        "`gold_ids_long` list<string>, `gold_ids` list<string>, `gold_answer` string |",
        "| `documents`, `long_documents` | `id` string, `content` string |",
        "",
        "| task | queries | document rows | distinct ids | id collisions | distinct texts | long documents "
        "| excluded_ids |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shapes = {"biology": '`["N/A"]`', "leetcode": "real lists", "theoremqa_theorems": "`[]`"}
    for task in TASKS:
        t = tasks[task]
        lines.append(
            f"| {task} | {t['queries']} | {t['document_rows']} | {t['distinct_ids']} | {t['id_collisions']} | "
            f"{t['distinct_texts']} | {t.get('long_document_rows', '–')} | {shapes[task]} |"
        )
    lines += [
        "",
        "`long_documents` exists for biology only (upstream has no long documents for leetcode and",
        "theoremqa_theorems). `gpt4_reason` has the rows of `examples` with `query` replaced by a longer",
        "reasoning text.",
        "",
        "Deliberate traps (bright.md §4):",
        "",
        f"* `{COLLISION_ID}` appears twice in biology `documents` with different content; the later",
        "  row (the on-topic text, a gold document of query 5) wins, as in BRIGHT's score map.",
        "* Duplicate texts under different ids: a boilerplate chunk under four biology ids",
        "  (`Phototaxis_4`, `Nasal_cycle_3`, `Hiccup_3`, `Waggle_dance_1`);",
        "  gold chunk `insects_attracted_to_light/Phototaxis_2.txt` also as `insects_attracted_to_light/moth_1.txt`",
        "  (not gold; it sorts first in the tie); theorem `1020` (gold) and `998` (not gold) share a text.",
        "* A gold id listed twice in one query (theoremqa_theorems, `TheoremQA_wenhuchen/fermat_little_1.json`).",
        "* leetcode: each query's own problem (`leetcode/leetcode_<n>.txt`, the same problem worded",
        "  differently) is in the corpus and excluded; query 0 lists `leetcode/leetcode_42.txt` twice",
        "  (BRIGHT iterates over `set(excluded_ids)`); every excluded id exists in the corpus (BRIGHT's",
        "  `dict.pop` would fail otherwise); excluded and gold ids never overlap.",
        "* Path-like ids (`/`, `.txt`, `.json`) and numeric-string ids (`998`, `18695`).",
        "* Biology long documents longer than 256 MiniLM tokens; `bird_migration/Magnetoreception.txt`",
        "  (gold of query 6) has its bird-specific part after the first 256 tokens.",
        "",
    ]
    (HUB / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm", type=Path, default=DEFAULT_MINILM, help="all-MiniLM-L6-v2 folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # token counts of long documents warn about > 256 tokens

    data = build_dataset()
    for path in write_parquet(data):
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")

    tasks, counterfactuals, settings = reference(data, args.minilm)
    gaps, dedup_diff = settings.pop("_gaps"), settings.pop("_dedup_diff")
    write_readme(data, tasks)
    golden = {
        "generator": "scripts/make_bright_fixture.py",
        "versions": versions(),
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_sha256": MINILM_SHA256,
        "max_seq_length": MAX_SEQ_LENGTH,
        "normalize": True,
        "score": "float32 dot product of L2-normalised float32 embeddings (cosine); one embedding per distinct text",
        "top_k": TOP_K,
        "measures": MEASURES,
        "dataset": "fixtures/bright-hub",
        "tasks": tasks,
        "settings": settings,
        "counterfactuals": counterfactuals,
    }
    GOLDENS.mkdir(parents=True, exist_ok=True)
    path = GOLDENS / "bright-fixture-minilm.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")

    print(f"per-row vs de-duplicated embeddings: max |diff| = {dedup_diff:.2e}")
    for name, s in settings.items():
        for task, r in s["tasks"].items():
            m = r["mean"]
            print(f"{name:12} {task:19} n={r['evaluated_queries']} ndcg@10={m['ndcg_cut_10']:.5f} "
                  f"r@1={m['recall_1']:.5f} r@10={m['recall_10']:.5f} r@100={m['recall_100']:.5f} "
                  f"mrr={m['recip_rank']:.5f}  min gold gap={gaps[(name, task)]:.2e}")
        m = s["mean_over_tasks"]
        print(f"{name:12} {'MEAN':19}     ndcg@10={m['ndcg_cut_10']:.5f} r@1={m['recall_1']:.5f} "
              f"r@10={m['recall_10']:.5f} r@100={m['recall_100']:.5f} mrr={m['recip_rank']:.5f}")
    print("counterfactuals (short, ndcg@10):", json.dumps(counterfactuals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
