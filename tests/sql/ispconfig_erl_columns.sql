-- ISPConfig 3's own `server`, `mail_domain` and `mail_user` tables (the columns of its
-- install/sql/ispconfig3.sql that matter here, with their definitions), then what the extension
-- LightNetAI/ispconfig-email-ratelimit adds: its columns (as its installer's ALTER TABLE does)
-- and its `email_ratelimit` table. Used by tests/erl_columns.rs.

CREATE TABLE `server` (
  `server_id` int(11) unsigned NOT NULL auto_increment,
  `sys_userid` int(11) unsigned NOT NULL default '0',
  `sys_groupid` int(11) unsigned NOT NULL default '0',
  `sys_perm_user` varchar(5) NOT NULL default '',
  `sys_perm_group` varchar(5) NOT NULL default '',
  `sys_perm_other` varchar(5) NOT NULL default '',
  `server_name` varchar(255) NOT NULL default '',
  `mail_server` tinyint(1) NOT NULL default '0',
  `web_server` tinyint(1) NOT NULL default '0',
  `config` text,
  `updated` bigint(20) unsigned NOT NULL default '0',
  `mirror_server_id` int(11) unsigned NOT NULL default '0',
  `dbversion` int(11) unsigned NOT NULL default '1',
  `active` tinyint(1) NOT NULL default '1',
  PRIMARY KEY (`server_id`)
) DEFAULT CHARSET=utf8;

CREATE TABLE `mail_domain` (
  `domain_id` int(11) unsigned NOT NULL auto_increment,
  `sys_userid` int(11) unsigned NOT NULL default '0',
  `sys_groupid` int(11) unsigned NOT NULL default '0',
  `sys_perm_user` varchar(5) NOT NULL default '',
  `sys_perm_group` varchar(5) NOT NULL default '',
  `sys_perm_other` varchar(5) NOT NULL default '',
  `server_id` int(11) unsigned NOT NULL default '0',
  `domain` varchar(255) NOT NULL default '',
  `dkim` enum('n','y') NOT NULL default 'n',
  `dkim_selector` varchar(63) NOT NULL default 'default',
  `dkim_private` mediumtext,
  `dkim_public` mediumtext,
  `active` enum('n','y') NOT NULL default 'n',
  PRIMARY KEY (`domain_id`),
  KEY `server_id` (`server_id`,`domain`),
  KEY `domain_active` (`domain`,`active`)
) DEFAULT CHARSET=utf8;

CREATE TABLE `mail_user` (
  `mailuser_id` int(11) unsigned NOT NULL auto_increment,
  `sys_userid` int(11) unsigned NOT NULL default '0',
  `sys_groupid` int(11) unsigned NOT NULL default '0',
  `sys_perm_user` varchar(5) NOT NULL default '',
  `sys_perm_group` varchar(5) NOT NULL default '',
  `sys_perm_other` varchar(5) NOT NULL default '',
  `server_id` int(11) unsigned NOT NULL default '0',
  `email` varchar(255) NOT NULL default '',
  `login` varchar(255) NOT NULL default '',
  `password` varchar(255) NOT NULL default '',
  `name` varchar(255) NOT NULL default '',
  `uid` int(11) NOT NULL default '5000',
  `gid` int(11) NOT NULL default '5000',
  `maildir` varchar(255) NOT NULL default '',
  `quota` bigint(20) NOT NULL default '-1',
  `postfix` enum('n','y') NOT NULL default 'y',
  `disablesmtp` enum('n','y') NOT NULL default 'n',
  PRIMARY KEY (`mailuser_id`),
  KEY `server_id` (`server_id`,`email`),
  KEY `email_access` (`email`)
) DEFAULT CHARSET=utf8;

ALTER TABLE `server` ADD COLUMN `erl_enabled` enum('n','y') NOT NULL DEFAULT 'n';
ALTER TABLE `server` ADD COLUMN `erl_out_limit` int(11) unsigned NOT NULL DEFAULT 500;
ALTER TABLE `server` ADD COLUMN `erl_out_interval` int(11) unsigned NOT NULL DEFAULT 3600;
ALTER TABLE `server` ADD COLUMN `erl_in_limit` int(11) unsigned NOT NULL DEFAULT 0;
ALTER TABLE `server` ADD COLUMN `erl_in_interval` int(11) unsigned NOT NULL DEFAULT 3600;
ALTER TABLE `server` ADD COLUMN `erl_default_user_out` int(11) unsigned NOT NULL DEFAULT 0;
ALTER TABLE `mail_domain` ADD COLUMN `erl_limit_mode` enum('global','unlimited','custom') NOT NULL DEFAULT 'global';
ALTER TABLE `mail_domain` ADD COLUMN `erl_out_limit` int(11) unsigned NOT NULL DEFAULT 0;
ALTER TABLE `mail_domain` ADD COLUMN `erl_out_interval` int(11) unsigned NOT NULL DEFAULT 3600;
ALTER TABLE `mail_domain` ADD COLUMN `erl_in_limit` int(11) unsigned NOT NULL DEFAULT 0;
ALTER TABLE `mail_domain` ADD COLUMN `erl_in_interval` int(11) unsigned NOT NULL DEFAULT 3600;
ALTER TABLE `mail_user` ADD COLUMN `erl_limit_mode` enum('domain','unlimited','custom') NOT NULL DEFAULT 'domain';
ALTER TABLE `mail_user` ADD COLUMN `erl_out_limit` int(11) unsigned NOT NULL DEFAULT 0;
ALTER TABLE `mail_user` ADD COLUMN `erl_out_interval` int(11) unsigned NOT NULL DEFAULT 3600;
ALTER TABLE `mail_user` ADD COLUMN `erl_in_limit` int(11) unsigned NOT NULL DEFAULT 0;
ALTER TABLE `mail_user` ADD COLUMN `erl_in_interval` int(11) unsigned NOT NULL DEFAULT 3600;

CREATE TABLE `email_ratelimit` (
  `ratelimit_id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `sys_userid` int(11) unsigned NOT NULL DEFAULT 0,
  `sys_groupid` int(11) unsigned NOT NULL DEFAULT 0,
  `sys_perm_user` varchar(5) NOT NULL DEFAULT '',
  `sys_perm_group` varchar(5) NOT NULL DEFAULT '',
  `sys_perm_other` varchar(5) NOT NULL DEFAULT '',
  `server_id` int(11) unsigned NOT NULL DEFAULT 0,
  `source` varchar(255) NOT NULL DEFAULT '',
  `type` enum('in','out','both') NOT NULL DEFAULT 'out',
  `interval` int(11) unsigned NOT NULL DEFAULT 3600,
  `limit` int(11) unsigned NOT NULL DEFAULT 0,
  `active` enum('n','y') NOT NULL DEFAULT 'y',
  PRIMARY KEY (`ratelimit_id`),
  KEY `server_id` (`server_id`),
  KEY `source` (`source`)
) DEFAULT CHARSET=utf8mb4;
