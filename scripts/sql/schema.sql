-- email-ratelimit: the limit tables in ISPConfig's database (dbispconfig).
-- Safe to run again: creates only what is missing, changes no existing row.
--
-- er_global_ratelimit: one row per server; the daemon uses the row whose server_id equals
-- [database] server_id, else the row with server_id = 0.
--   global_limit           recipients a day for all authenticated senders together
--                          (NULL or 0: the config file's [limits] global)
--   default_mailbox_limit  the cap of an opted-in mailbox without its own number
--                          (NULL or 0: the config file's [limits] default_mailbox)
--
-- er_mail_user_ratelimit: opt-in caps, one row per mailbox (mail_user.mailuser_id).
--   enabled      'y' caps the mailbox; 'n' leaves it uncapped (still counted)
--   daily_limit  recipients a day; NULL or 0: the default per-mailbox cap
-- The mailbox's address is mail_user.email of the same mailuser_id.

CREATE TABLE IF NOT EXISTS er_global_ratelimit (
  server_id INT UNSIGNED NOT NULL,
  global_limit INT UNSIGNED NULL DEFAULT 999,
  default_mailbox_limit INT UNSIGNED NULL DEFAULT 50,
  PRIMARY KEY (server_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS er_mail_user_ratelimit (
  mailuser_id INT UNSIGNED NOT NULL,
  enabled ENUM('n','y') NOT NULL DEFAULT 'n',
  daily_limit INT UNSIGNED NULL DEFAULT NULL,
  PRIMARY KEY (mailuser_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO er_global_ratelimit (server_id, global_limit, default_mailbox_limit)
VALUES (0, 999, 50);
