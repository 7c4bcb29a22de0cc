"""Write the tables of docs/guide/vocabulary.md from metricloss/_vocabulary.py, between the page's markers:
``python docs/write_vocabulary.py``."""

import re
from pathlib import Path

from metricloss._vocabulary import page_tables

PAGE = Path(__file__).with_name("guide") / "vocabulary.md"
BEGIN, END = "<!-- vocabulary tables: python docs/write_vocabulary.py -->", "<!-- /vocabulary tables -->"

if __name__ == "__main__":
    pattern = re.escape(BEGIN) + ".*?" + re.escape(END)
    PAGE.write_text(re.sub(pattern, lambda _: f"{BEGIN}\n{page_tables()}\n{END}", PAGE.read_text(), flags=re.DOTALL))
