/*
 * Unit tests: PII masking.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tx_pii.h"


static tx_pii_t *all;


static int
setup(void **state)
{
    char err[128];

    if (tx_pii_create(&all, TX_PII_ALL, err, sizeof(err)) != TX_OK
        || tx_pii_add_rule(all, "employee", "EMP-[0-9]{6}", err, sizeof(err))
               != TX_OK)
    {
        return -1;
    }

    return 0;
}


static int
teardown(void **state)
{
    tx_pii_free(all);

    return 0;
}


/* masks s with `all`, checks the result, and that masking it again
   changes nothing */

static void
check_res(const tx_pii_t *pii, const char *s, const char *want,
          tx_pii_result_t *res)
{
    char            err[128];
    tx_pii_result_t again;

    assert_int_equal(tx_pii_mask(pii, (const uint8_t *) s, strlen(s), res, err,
                                 sizeof(err)),
                     TX_OK);

    if (strcmp((char *) res->data, want) != 0) {
        fail_msg("\n  in:   %s\n  got:  %s\n  want: %s", s, res->data, want);
    }

    assert_int_equal(res->len, strlen(want));

    assert_int_equal(tx_pii_mask(pii, res->data, res->len, &again, err,
                                 sizeof(err)),
                     TX_OK);
    assert_string_equal((char *) again.data, want);
    assert_int_equal(again.total, 0);
    tx_pii_result_free(&again);
}


static void
check(const char *s, const char *want)
{
    tx_pii_result_t res;

    check_res(all, s, want, &res);
    tx_pii_result_free(&res);
}


static void
same(const char *s)
{
    check(s, s);
}


static void
test_email(void **state)
{
    tx_pii_result_t res;

    check("mail me at a.b@example.com", "mail me at [EMAIL_1]");
    check("{\"content\":\"mail me at a.b@example.com\"}",
          "{\"content\":\"mail me at [EMAIL_1]\"}");
    check("x@y.io, z+tag@mail.w-x.org; x@y.io.", "[EMAIL_1], [EMAIL_2]; "
                                                 "[EMAIL_1].");
    check("<John.Doe_99@sub.example.co.uk>", "<[EMAIL_1]>");

    /* escapes are boundaries: never inside a token */
    check("{\"a\":\"a@b.com\\nnext\",\"b\":\"say \\\"c@d.com\\\"\"}",
          "{\"a\":\"[EMAIL_1]\\nnext\",\"b\":\"say \\\"[EMAIL_2]\\\"\"}");
    check("{\"a\":\"caf\\u00e9 a@b.com\"}", "{\"a\":\"caf\\u00e9 [EMAIL_1]\"}");
    check("{\"a@b.com\":1}", "{\"[EMAIL_1]\":1}");

    same("a@b");
    same("user@localhost");
    same("@example.com");
    same("a@b.c");
    same("foo@bar.123");
    same("a..@b.com@");
    same("{\"a\":\"x\\u0040y.com\"}");

    check_res(all, "a@b.com c@d.com a@b.com", "[EMAIL_1] [EMAIL_2] [EMAIL_1]",
              &res);
    assert_int_equal(res.found[TX_PII_K_EMAIL], 3);
    assert_int_equal(res.distinct[TX_PII_K_EMAIL], 2);
    assert_int_equal(res.total, 3);
    tx_pii_result_free(&res);
}


static void
test_phone(void **state)
{
    check("call +44 20 7946 0958 now", "call [PHONE_1] now");
    check("+14155552671", "[PHONE_1]");
    check("(555) 123-4567", "[PHONE_1]");
    check("tel: +1 (555) 123-4567.", "tel: [PHONE_1].");
    check("555-123-4567 or 555.123.4567", "[PHONE_1] or [PHONE_2]");
    check("06 12 34 56 78", "[PHONE_1]");
    check("030/1234567", "[PHONE_1]");
    check("ring 555-1234, thanks", "ring [PHONE_1], thanks");
    check("{\"phone\":\"+33 6 12 34 56 78\"}", "{\"phone\":\"[PHONE_1]\"}");

    /* ids, timestamps, dates, versions, amounts, addresses */
    same("order 2024-11-22 shipped");
    same("on 22/11/2024 at 10:30");
    same("2024-11-22 10:30:00");
    same("2024-11-22T10:30:00Z");
    same("ts 1732272000 id 12345678901");
    same("+123456");
    same("host 192.168.100.200");
    same("1 000 000 and 12 345 678");
    same("pi 3.14159265 and 1234.5678");
    same("v1.2.3.4567890");
    same("abc555-123-4567");
    same("555-123-4567abc");
    same("12.5% and 3-4, 1.5-2.5");
    same("+1234567890123456"); /* 16 digits */
    check("(555 123-4567", "(555 [PHONE_1]");
    same("{\"n\":5551234567}");
}


static void
test_card(void **state)
{
    tx_pii_result_t res;

    check("card 4111 1111 1111 1111 exp", "card [CARD_1] exp");
    check("4111-1111-1111-1111", "[CARD_1]");
    check("4111111111111111", "[CARD_1]");
    check("amex 378282246310005", "amex [CARD_1]");
    check("3782 822463 10005", "[CARD_1]");
    check("4111111111111111 5500005555555559 4111111111111111",
          "[CARD_1] [CARD_2] [CARD_1]");
    check("{\"card\":\"5555 5555 5555 4444\"}", "{\"card\":\"[CARD_1]\"}");

    /* Luhn fails, not a network, a timestamp in ms, a bare JSON number */
    same("4111111111111112");
    same("4111 1111 1111 1112");
    same("1234567890123452");
    same("ms 1732272000000");
    same("{\"card\":4111111111111111}");
    same("x4111111111111111");

    check_res(all, "4111111111111112 4111111111111111",
              "4111111111111112 [CARD_1]", &res);
    assert_int_equal(res.found[TX_PII_K_CARD], 1);
    assert_int_equal(res.found[TX_PII_K_PHONE], 0);
    tx_pii_result_free(&res);
}


static void
test_iban(void **state)
{
    tx_pii_result_t res;

    check("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [IBAN_1] please");
    check("GB82WEST12345698765432", "[IBAN_1]");
    check("DE89370400440532013000, DE89 3704 0044 0532 0130 00",
          "[IBAN_1], [IBAN_2]");
    check("NO9386011117947", "[IBAN_1]");
    check("GB82 WEST 1234 5698 7654 32 AND MORE", "[IBAN_1] AND MORE");
    check("{\"iban\":\"FR1420041010050500013M02606\"}",
          "{\"iban\":\"[IBAN_1]\"}");

    same("GB82WEST12345698765433");
    same("gb82west12345698765432");
    same("GB82WEST12345698765432X");
    same("XGB82WEST12345698765432");

    /* a wrong check digit: no IBAN (its digits alone look like a phone) */
    check_res(all, "GB83 WEST 1234 5698 7654 32", "GB83 WEST [PHONE_1]", &res);
    assert_int_equal(res.found[TX_PII_K_IBAN], 0);
    tx_pii_result_free(&res);
}


static void
test_secret(void **state)
{
    check("key sk-proj-abcdefghijklmnopqrstuvwxyz0123_-XY end",
          "key [SECRET_1] end");
    check("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv", "[SECRET_1]");
    check("sk-torrix-0123456789abcdefghij", "[SECRET_1]");
    check("AKIAIOSFODNN7EXAMPLE", "[SECRET_1]");
    check("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[SECRET_1]");
    check("github_pat_11ABCDEFG0123456789_abcdefghijkl", "[SECRET_1]");
    check("xoxb-1234567890-abcdefghij", "[SECRET_1]");
    check("AIzaSyA-1234567890abcdefghijklmnopqrstu", "[SECRET_1]");
    check("{\"headers\":{\"Authorization\":\"Bearer eyJhbGciOiJIUzI1NiJ9."
          "eyJzdWIiOiIxIn0.abc\"}}",
          "{\"headers\":{\"Authorization\":\"Bearer [SECRET_1]\"}}");
    check("sk-aaaaaaaaaaaaaaaaaaaaaaaa sk-bbbbbbbbbbbbbbbbbbbbbbbb "
          "sk-aaaaaaaaaaaaaaaaaaaaaaaa",
          "[SECRET_1] [SECRET_2] [SECRET_1]");

    same("sk-short");
    same("task-1234567890123456789012345");
    same("AKIA123");
    same("AKIAIOSFODNN7EXAMPLEX");
    same("Bearer short");
    same("ghp_short");
    same("AIzaSyA-1234567890");
}


static void
test_custom(void **state)
{
    char            err[128];
    tx_pii_t       *p;
    tx_pii_result_t res;

    check_res(all, "employee EMP-123456 and EMP-654321, EMP-123456",
              "employee [EMPLOYEE_1] and [EMPLOYEE_2], [EMPLOYEE_1]", &res);
    assert_int_equal(res.found[TX_PII_K_CUSTOM], 3);
    assert_int_equal(res.distinct[TX_PII_K_CUSTOM], 2);
    assert_int_equal(tx_pii_kinds(all), TX_PII_K_CUSTOM + 1);
    assert_string_equal(tx_pii_kind_name(all, TX_PII_K_CUSTOM), "EMPLOYEE");
    assert_string_equal(tx_pii_kind_name(all, TX_PII_K_IBAN), "IBAN");
    assert_null(tx_pii_kind_name(all, TX_PII_K_CUSTOM + 1));
    assert_null(tx_pii_kind_name(all, -1));
    tx_pii_result_free(&res);

    /* custom rules alone, anchors, escapes as boundaries */
    assert_int_equal(tx_pii_create(&p, 0, err, sizeof(err)), TX_OK);
    assert_int_equal(tx_pii_add_rule(p, "Ticket_no", "^T[0-9]+", err,
                                     sizeof(err)),
                     TX_OK);

    check_res(p, "T1 T2 a@b.com", "[TICKET_NO_1] T2 a@b.com", &res);
    tx_pii_result_free(&res);
    check_res(p, "{\"t\":\"T77\\nT78 T79\"}",
              "{\"t\":\"[TICKET_NO_1]\\n[TICKET_NO_2] T79\"}", &res);
    tx_pii_result_free(&res);

    /* empty matches are skipped */
    assert_int_equal(tx_pii_add_rule(p, "x", "(a|b)*", err, sizeof(err)),
                     TX_OK);
    check_res(p, "xab ba", "x[X_1] [X_2]", &res);
    tx_pii_result_free(&res);

    /* bad rules */
    assert_int_equal(tx_pii_add_rule(p, "e", "EMP-[0-9", err, sizeof(err)),
                     TX_ERROR);
    assert_non_null(strstr(err, "rule \"e\""));
    assert_int_equal(tx_pii_add_rule(p, "bad name", "x", err, sizeof(err)),
                     TX_ERROR);
    assert_int_equal(tx_pii_add_rule(p, "", "x", err, sizeof(err)), TX_ERROR);
    assert_int_equal(tx_pii_add_rule(p, "n\"", "x", err, sizeof(err)),
                     TX_ERROR);
    assert_int_equal(tx_pii_add_rule(p, "GB82WEST12345698765432", "x", err,
                                     sizeof(err)),
                     TX_ERROR);
    assert_int_equal(tx_pii_add_rule(p, "x", NULL, err, sizeof(err)), TX_ERROR);
    assert_int_equal(tx_pii_kinds(p), TX_PII_K_CUSTOM + 2);

    tx_pii_free(p);
    tx_pii_free(NULL);
}


static void
test_kinds(void **state)
{
    char            err[64];
    tx_pii_t       *p;
    tx_pii_result_t res;

    assert_int_equal(tx_pii_create(&p, TX_PII_EMAIL | TX_PII_IBAN, err,
                                   sizeof(err)),
                     TX_OK);

    check_res(p,
              "a@b.com +44 20 7946 0958 4111111111111111 "
              "GB82WEST12345698765432 sk-aaaaaaaaaaaaaaaaaaaaaaaa",
              "[EMAIL_1] +44 20 7946 0958 4111111111111111 [IBAN_1] "
              "sk-aaaaaaaaaaaaaaaaaaaaaaaa",
              &res);
    tx_pii_result_free(&res);
    tx_pii_free(p);

    assert_int_equal(tx_pii_create(&p, 0, err, sizeof(err)), TX_OK);
    check_res(p, "a@b.com", "a@b.com", &res);
    tx_pii_result_free(&res);
    tx_pii_free(p);
}


static void
test_mixed(void **state)
{
    tx_pii_result_t res;

    /* overlaps: the earliest, then the longest */
    check("+14155552671@example.com", "[EMAIL_1]");
    check("x@4111111111111111.com", "[EMAIL_1]");

    /* glued values: only the first; a token is glued to what follows */
    check("a@b.co+14155552671", "[EMAIL_1]+14155552671");
    check("a@b.co+1415555+141555526+0141555526+0",
          "[EMAIL_1]+1415555+141555526+0141555526+0");
    same("[EMAIL_1]a@b.com [X_12]+14155552671 4111111111111111[CARD_3]");
    same("[EMAIL_1] 555-123-4567, 4111111111111111-[CARD_3]");
    check("1-4-11-122 10c@b.cool", "1-4-11-122 [EMAIL_1]");
    check("[EMAIL_1] a@b.com", "[EMAIL_1] [EMAIL_1]");
    check("[a@b.com] [x] (555) 123-4567 [EMAIL]", "[[EMAIL_1]] [x] "
                                                  "[PHONE_1] [EMAIL]");

    check_res(all,
              "{\"messages\":[{\"role\":\"user\",\"content\":\"I am "
              "jane@corp.example, card 4111 1111 1111 1111, phone "
              "+1 415 555 2671, IBAN GB82 WEST 1234 5698 7654 32, key "
              "sk-proj-0123456789abcdefghijKL, again jane@corp.example\"}],"
              "\"n\":4111111111111111}",
              "{\"messages\":[{\"role\":\"user\",\"content\":\"I am "
              "[EMAIL_1], card [CARD_1], phone [PHONE_1], IBAN [IBAN_1], "
              "key [SECRET_1], again [EMAIL_1]\"}],\"n\":4111111111111111}",
              &res);
    assert_int_equal(res.total, 6);
    assert_int_equal(res.found[TX_PII_K_EMAIL], 2);
    assert_int_equal(res.distinct[TX_PII_K_EMAIL], 1);
    assert_int_equal(res.found[TX_PII_K_CARD], 1);
    assert_int_equal(res.found[TX_PII_K_PHONE], 1);
    assert_int_equal(res.found[TX_PII_K_IBAN], 1);
    assert_int_equal(res.found[TX_PII_K_SECRET], 1);
    tx_pii_result_free(&res);

    /* SSE text: not JSON as a whole, still quotes are boundaries */
    check("data: {\"delta\":{\"content\":\"x@y.com\"}}\n\n",
          "data: {\"delta\":{\"content\":\"[EMAIL_1]\"}}\n\n");

    /* text that starts like JSON, JSON arrays */
    check("[INFO] mail a@b.com [x]", "[INFO] mail [EMAIL_1] [x]");
    check(" [1, \"a@b.com\", {\"k\": \"c@d.com\"}] ",
          " [1, \"[EMAIL_1]\", {\"k\": \"[EMAIL_2]\"}] ");

    /* plain text, quotes */
    check("He said \"a@b.com\".", "He said \"[EMAIL_1]\".");
}


static void
test_edges(void **state)
{
    char            err[64], big[70000];
    size_t          i;
    tx_pii_result_t res;

    assert_int_equal(tx_pii_mask(all, NULL, 0, &res, err, sizeof(err)), TX_OK);
    assert_int_equal(res.len, 0);
    assert_string_equal((char *) res.data, "");
    tx_pii_result_free(&res);
    tx_pii_result_free(&res);

    same("");
    same("\"");
    same("\\");
    same("{\"a\":\"\\");
    same("{\"a\":\"\\u12");
    same("[[[[");

    /* only len bytes are read */
    assert_int_equal(tx_pii_mask(all, (const uint8_t *) "a@b.comXYZ", 7, &res,
                                 err, sizeof(err)),
                     TX_OK);
    assert_string_equal((char *) res.data, "[EMAIL_1]");
    tx_pii_result_free(&res);

    /* many values: the numbering and the value table grow */
    big[0] = '\0';

    for (i = 0; i < 3000; i++) {
        sprintf(big + strlen(big), "u%zu@x.io ", i % 1500);
    }

    assert_int_equal(tx_pii_mask(all, (const uint8_t *) big, strlen(big), &res,
                                 err, sizeof(err)),
                     TX_OK);
    assert_int_equal(res.found[TX_PII_K_EMAIL], 3000);
    assert_int_equal(res.distinct[TX_PII_K_EMAIL], 1500);
    assert_non_null(strstr((char *) res.data, "[EMAIL_1500] [EMAIL_1] "));
    tx_pii_result_free(&res);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),  cmocka_unit_test(test_phone),
        cmocka_unit_test(test_card),   cmocka_unit_test(test_iban),
        cmocka_unit_test(test_secret), cmocka_unit_test(test_custom),
        cmocka_unit_test(test_kinds),  cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_edges),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
