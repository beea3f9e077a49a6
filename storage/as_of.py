"""A run as it stood at the end of a period, in SQL both backends share.

Runs keep their current status only. A report of a past period (the public report, a
console view of last month) counts a run that ended after the period as still under
way then, so the report does not change when someone finishes later: that change would
show what one person did (found by review).
"""

# `{0}`: the placeholder of the period's end in the caller's SQL dialect.
AS_OF_UNTIL = (
    "CASE WHEN updated_at >= {0} AND status NOT IN ('consent', 'active') THEN 'active'"
    " ELSE status END"
)
