"""The operations suite (users, messages, their async twins), run again through PgBouncer.

The tests are the main suite's own, imported here by name so that this directory's fixtures
apply: every engine and session goes through PgBouncer in transaction mode with
``DATABASE_POOLER=pgbouncer``, and the race tests run their concurrent clients through it.
`ann` and `bob` are test_messages' fixtures. `test_concurrent_first_touches_make_one_row` and
`test_session_usable_after_rollback` come from test_users only: test_aio and test_messages
have tests of those names too, which the star imports this list replaced shadowed.
"""

import pytest

from test_aio import (  # noqa: F401 - collected by pytest here
    test_bad_input_and_rollback,
    test_create_user_and_authenticate,
    test_create_user_duplicates_keep_transaction,
    test_every_operation_has_a_twin,
    test_hashing_does_not_block_the_event_loop,
    test_lookups_and_link,
    test_messages,
    test_touch,
    test_twins_match_the_sync_operations,
)
from test_messages import (  # noqa: F401 - collected by pytest here
    ann,
    bob,
    test_conversation_pages,
    test_conversation_rejects_bad_input,
    test_inbox_boundaries,
    test_inbox_never_offsets,
    test_inbox_pages_newest_first,
    test_inbox_rejects_bad_input,
    test_inbox_unread_only,
    test_mark_read_all,
    test_mark_read_conversation,
    test_mark_read_empty_ids,
    test_mark_read_ids_only_own,
    test_mark_read_rejects_bad_input,
    test_mark_read_updates_loaded_messages,
    test_replies,
    test_reply_inherits_conversation,
    test_send_message,
    test_send_message_is_one_statement,
    test_send_rejects_bad_input,
    test_send_to_self,
    test_send_unknown_reference,
    test_send_while_sender_is_deleted,
    test_unread_count,
)
from test_users import (  # noqa: F401 - collected by pytest here
    test_authenticate_by_username_or_email,
    test_authenticate_failures,
    test_authenticate_statements,
    test_authenticate_unknown_login_still_hashes,
    test_authenticate_upgrades_outdated_hash,
    test_concurrent_first_touches_make_one_row,
    test_create_user_duplicates,
    test_create_user_is_one_statement,
    test_create_user_rejects_bad_input,
    test_create_user_stores_an_argon2_hash,
    test_link_telegram_rejects_bad_ids,
    test_link_telegram_taken_keeps_transaction,
    test_link_telegram_then_touch_finds_the_account,
    test_link_telegram_unknown_user,
    test_lookups,
    test_lookups_reject_bad_input,
    test_operations_flush_pending_changes,
    test_registration_race,
    test_session_usable_after_rollback,
    test_touch_accepts_an_aiogram_user,
    test_touch_creates_user_with_profile,
    test_touch_existing_refreshes_profile_and_login,
    test_touch_is_one_statement,
    test_touch_keeps_web_account_fields,
    test_touch_refreshes_the_loaded_instance,
    test_touch_refuses_an_object_and_keywords,
    test_touch_rejects_bad_input,
)

# test_aio's module mark, which its star import used to bring in for the whole module.
pytestmark = pytest.mark.anyio
