-- A channel's seqs are unique and gap-free by construction: the node's writer hands them
-- out from `channels.last_seq` inside the transaction that stores the messages. The unique
-- index only repeated that check, and nothing reads through it, while every message paid
-- for one more B-tree leaf in a random place, written to the log and copied back by the
-- checkpoint.
DROP INDEX messages_seq;
