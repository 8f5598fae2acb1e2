"""China's public holidays and make-up workdays (调休), as published each year by the State Council
(国务院办公厅关于节假日安排的通知). Update this table (or load a newer YAML with
`HolidayCalendar.from_yaml`) when the next year's notice comes out; past EXPIRES dialing stops.
"""

from __future__ import annotations

from datetime import date

#: the last day this table covers; dialing stops after it until the table is updated
EXPIRES = date(2026, 12, 31)

#: (first, last) day off, inclusive, and the name
HOLIDAYS: list[tuple[str, str, str]] = [
    ("2025-01-01", "2025-01-01", "元旦"),
    ("2025-01-28", "2025-02-04", "春节"),
    ("2025-04-04", "2025-04-06", "清明节"),
    ("2025-05-01", "2025-05-05", "劳动节"),
    ("2025-05-31", "2025-06-02", "端午节"),
    ("2025-10-01", "2025-10-08", "国庆节、中秋节"),
    ("2026-01-01", "2026-01-03", "元旦"),
    ("2026-02-15", "2026-02-23", "春节"),
    ("2026-04-04", "2026-04-06", "清明节"),
    ("2026-05-01", "2026-05-05", "劳动节"),
    ("2026-06-19", "2026-06-21", "端午节"),
    ("2026-09-25", "2026-09-27", "中秋节"),
    ("2026-10-01", "2026-10-07", "国庆节"),
]

#: weekend days that are working days (调休上班)
MAKEUP_WORKDAYS: list[str] = [
    "2025-01-26",
    "2025-02-08",
    "2025-04-27",
    "2025-09-28",
    "2025-10-11",
    "2026-01-04",
    "2026-02-14",
    "2026-02-28",
    "2026-05-09",
    "2026-09-20",
    "2026-10-10",
]
