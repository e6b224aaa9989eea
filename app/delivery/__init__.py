"""Pure decisions of the delivery pipeline: no database, no network, no clock reads.

Every function here takes what it needs as arguments so unit tests call it
directly; jobs and views load the inputs and act on the answers.
"""
