//! Every label of the pages and every message of the API's validation, Russian (the seed's
//! language, the default of the pages) and English, in one place. Server-rendered text and the
//! pages' scripts read the same label table (the scripts get the page language's column as JSON);
//! API refusals are written in the language the request asks for (`Accept-Language`, which the
//! pages set to their own), from the typed reason, never by translating English text.

use jobbot_core::config::ProblemKind;

use crate::error::{ApiError, Reason};

/// The language of the pages, from the `lang` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "ru" => Some(Lang::Ru),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn other(self) -> Self {
        match self {
            Lang::Ru => Lang::En,
            Lang::En => Lang::Ru,
        }
    }

    /// The language an API request asks for: the first tag of `Accept-Language` when it is
    /// Russian or English, else English.
    pub fn of_request(headers: &axum::http::HeaderMap) -> Self {
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|tag| tag.split([';', '-', '_']).next())
            .map(str::trim)
            .and_then(|tag| Self::parse(&tag.to_ascii_lowercase()))
            .unwrap_or(Lang::En)
    }
}

/// `(key, ru, en)`.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("lang_name", "Русский", "English"),
    ("nav_channels", "Каналы", "Channels"),
    ("nav_agents", "Агенты", "Agents"),
    ("nav_vacancies", "Вакансии", "Vacancies"),
    ("nav_conversations", "AI-диалоги", "AI conversations"),
    ("nav_logins", "Вход в Telegram", "Telegram logins"),
    ("nav_cluster", "Кластер", "Cluster"),
    ("nav_doctor", "Диагностика", "Doctor"),
    ("logout", "Выйти", "Log out"),
    ("admin_login_title", "Вход в jobbot", "Log in to jobbot"),
    ("admin_password", "Пароль администратора", "Admin password"),
    ("admin_login_button", "Войти", "Log in"),
    ("channels_title", "Выходные каналы", "Output channels"),
    ("new_channel", "Добавить канал", "Add channel"),
    ("stat_channels", "Всего каналов", "Channels"),
    ("stat_enabled", "Активных", "Enabled"),
    ("stat_sources", "Источников", "Input sources"),
    ("stat_agents", "Агентов", "Agents"),
    ("stat_crm", "С CRM", "With CRM"),
    ("badge_enabled", "Активен", "Enabled"),
    ("badge_disabled", "Выключен", "Disabled"),
    ("badge_crm", "CRM", "CRM"),
    ("sources_count", "Источники", "Sources"),
    ("agents_count", "Агенты", "Agents"),
    ("keywords", "Ключевые слова", "Keywords"),
    ("excluded", "Исключить", "Exclude"),
    ("edit", "Редактировать", "Edit"),
    ("delete", "Удалить", "Delete"),
    (
        "confirm_delete",
        "Удалить канал «{name}»?",
        "Delete channel “{name}”?",
    ),
    ("no_channels", "Каналов пока нет.", "No channels yet."),
    ("form_new_title", "Новый канал", "New channel"),
    ("form_edit_title", "Редактирование канала", "Edit channel"),
    ("section_basic", "Основное", "Basics"),
    ("field_id", "ID канала", "Channel ID"),
    ("field_id_help", "Пусто — сгенерировать", "Empty: generated"),
    ("field_name", "Название канала", "Channel name"),
    (
        "field_telegram_id",
        "Telegram ID канала",
        "Telegram channel ID",
    ),
    ("field_enabled", "Канал активен", "Channel enabled"),
    ("section_sources", "Источники", "Input sources"),
    (
        "field_input_sources",
        "Каналы-источники (по одному в строке: @username или https://t.me/…)",
        "Source channels (one per line: @username or https://t.me/…)",
    ),
    ("section_filters", "Фильтры", "Filters"),
    (
        "field_include",
        "Ключевые слова (через запятую)",
        "Include keywords (comma-separated)",
    ),
    (
        "field_exclude",
        "Слова-исключения (через запятую)",
        "Exclude keywords (comma-separated)",
    ),
    (
        "field_require_all",
        "Требовать все ключевые слова",
        "Require all include keywords",
    ),
    ("section_crm", "CRM", "CRM"),
    (
        "section_setup",
        "Создать канал и CRM-группу",
        "Create output channel and CRM group",
    ),
    (
        "setup_help",
        "Основной аккаунт создаст канал для вакансий и CRM-группу с темами, пригласит агентов и сохранит их id и ссылку-приглашение в канале. Если шаг не удастся, созданное будет удалено.",
        "The main account creates the vacancies channel and the CRM forum group, brings the agents in, and saves their ids and the invite link in this channel. If a step fails, what was created is deleted again.",
    ),
    ("setup_channel_title", "Название канала", "Channel title"),
    (
        "setup_keep_output_channel",
        "Оставить канал из поля «Telegram ID канала» и создать только CRM-группу",
        "Keep the channel in “Telegram channel ID” and create only the CRM group",
    ),
    (
        "setup_group_title",
        "Название CRM-группы",
        "CRM group title",
    ),
    (
        "setup_button",
        "Создать канал и CRM-группу",
        "Create output channel and CRM group",
    ),
    (
        "setup_running",
        "Создаём… это может занять минуту.",
        "Creating… this can take a minute.",
    ),
    (
        "field_crm_enabled",
        "CRM Функциональность",
        "CRM functionality",
    ),
    ("field_crm_group", "ID CRM группы", "CRM group ID"),
    (
        "field_crm_invite_link",
        "Ссылка-приглашение в CRM группу (агенты входят по ней)",
        "CRM group invite link (agents join with it)",
    ),
    ("agents_label", "Агенты", "Agents"),
    ("add_agent", "Добавить агента", "Add agent"),
    ("agent_phone", "Телефон агента", "Agent phone"),
    ("agent_session", "Имя сессии", "Session name"),
    ("remove_agent", "Удалить агента", "Remove agent"),
    ("pacing_mpm", "Сообщений в минуту", "Messages per minute"),
    ("pacing_burst", "Подряд (burst)", "Burst"),
    (
        "pacing_cold",
        "Первых сообщений в день",
        "First messages per day",
    ),
    (
        "pacing_pause",
        "Пауза после PeerFlood, ч",
        "Pause after PeerFlood, h",
    ),
    ("section_responses", "Автоответ", "Auto-response"),
    (
        "field_auto_response",
        "Автоответ включён",
        "Auto-response enabled",
    ),
    (
        "field_template",
        "Шаблон автоответа",
        "Auto-response template",
    ),
    ("field_ai", "AI-диалог", "AI conversation"),
    ("field_ai_mode", "Режим AI", "AI mode"),
    (
        "ai_mode_manual",
        "Вручную (только запись)",
        "Manual (record only)",
    ),
    (
        "ai_mode_suggest",
        "Подсказки оператору",
        "Suggestions for the operator",
    ),
    (
        "ai_mode_auto",
        "Автоматически (отвечает агент)",
        "Automatic (the agent replies)",
    ),
    ("field_ai_provider", "LLM-провайдер", "LLM provider"),
    (
        "field_ai_model",
        "Модель (пусто — по умолчанию)",
        "Model (empty: the provider's default)",
    ),
    (
        "field_ai_fallback",
        "Запасные провайдеры (по строке: провайдер [модель])",
        "Fallback providers (one a line: provider [model])",
    ),
    (
        "field_ai_reply_delay",
        "Задержка ответа ИИ, с (от – до)",
        "AI reply delay, s (from – to)",
    ),
    (
        "field_ai_max_replies",
        "Ответов ИИ в день на диалог",
        "AI replies per conversation per day",
    ),
    (
        "field_ai_temperature",
        "Температура модели (0–2)",
        "Model temperature (0–2)",
    ),
    (
        "field_ai_max_tokens",
        "Максимум токенов в ответе модели",
        "Most tokens in a model's answer",
    ),
    (
        "field_ai_context_window",
        "Сообщений диалога, которые видит модель",
        "Conversation messages the model sees",
    ),
    (
        "ai_prompts",
        "Промпты (пустой — встроенный текст)",
        "Prompts (empty: the built-in text)",
    ),
    ("prompt_base_context", "Базовый контекст", "Base context"),
    ("prompt_discovery", "Фаза: знакомство", "Phase: discovery"),
    ("prompt_engagement", "Фаза: вовлечение", "Phase: engagement"),
    (
        "prompt_call_ready",
        "Фаза: готов к созвону",
        "Phase: ready for a call",
    ),
    (
        "prompt_call_pending",
        "Фаза: созвон назначается",
        "Phase: call pending",
    ),
    (
        "prompt_call_declined",
        "Фаза: созвон отклонён",
        "Phase: call declined",
    ),
    (
        "field_instant",
        "Мгновенный ответ (без задержки)",
        "Instant response (no delay)",
    ),
    ("field_delay_min", "Задержка от, с", "Delay from, s"),
    ("field_delay_max", "Задержка до, с", "Delay to, s"),
    ("save", "Сохранить", "Save"),
    ("cancel", "Отмена", "Cancel"),
    ("saved", "Сохранено", "Saved"),
    ("err_required", "Обязательное поле", "Required"),
    (
        "err_phone",
        "Телефон: + и от 8 до 15 цифр",
        "Phone: + and 8 to 15 digits",
    ),
    (
        "err_session",
        "Имя сессии: латинские буквы, цифры, _ или -",
        "Session name: letters, digits, _ or -",
    ),
    (
        "err_crm_agents",
        "CRM включена — нужен хотя бы один агент",
        "CRM is enabled: add at least one agent",
    ),
    ("err_number", "Нужно целое число", "Must be a whole number"),
    (
        "err_duplicate_session",
        "Эта сессия уже в списке",
        "This session is listed already",
    ),
    (
        "conflict",
        "Конфликт: канал изменили после открытия формы. Ваши изменения не сохранены — перезагрузите страницу и внесите их снова.",
        "Conflict: the channel changed after this form was opened. Your changes were not saved — reload the page and make them again.",
    ),
    ("reload", "Перезагрузить", "Reload"),
    (
        "errors_below",
        "Исправьте отмеченные поля.",
        "Fix the marked fields.",
    ),
    ("error_generic", "Ошибка", "Error"),
    ("agents_title", "Агенты", "Agents"),
    ("col_agent", "Агент", "Agent"),
    ("col_channels", "Каналы", "Channels"),
    ("col_state", "Состояние", "State"),
    ("col_headroom", "Запас темпа", "Pacing headroom"),
    (
        "col_rate",
        "Темп: выучен / потолок, в мин",
        "Rate: learned / ceiling, per min",
    ),
    ("rate_resolve_username", "поиск", "resolve"),
    ("rate_join_channel", "вступления", "joins"),
    ("rate_create_forum_topic", "темы", "topics"),
    (
        "col_sent",
        "Отправлено мин / час / день",
        "Sent min / hour / day",
    ),
    ("col_error", "Последняя ошибка", "Last error"),
    ("col_actions", "Действия", "Actions"),
    ("pause", "Пауза", "Pause"),
    ("resume", "Возобновить", "Resume"),
    ("remove", "Удалить", "Remove"),
    ("state_ready", "Готов", "Ready"),
    ("state_connecting", "Подключение", "Connecting"),
    ("state_disconnected", "Отключён", "Disconnected"),
    ("state_not_logged_in", "Нет входа", "Not logged in"),
    (
        "state_dead",
        "Сессия недействительна: нужен новый вход",
        "Session dead: log in again",
    ),
    ("state_paused", "На паузе", "Paused"),
    ("state_stopped", "Остановлен", "Stopped"),
    (
        "state_elsewhere_in_cluster",
        "На другом узле",
        "On another node",
    ),
    ("state_idle", "Не запущен", "Not running"),
    ("state_flood_wait", "FloodWait", "FloodWait"),
    ("state_peer_flood", "PeerFlood", "PeerFlood"),
    ("live_connected", "Онлайн", "Live"),
    (
        "live_disconnected",
        "Нет связи, переподключение…",
        "Disconnected, reconnecting…",
    ),
    ("bulk_title", "Массовое добавление", "Bulk add"),
    (
        "bulk_help",
        "По строке на агента: «+79991234567 session_name»",
        "One agent per line: “+79991234567 session_name”",
    ),
    ("bulk_channel", "Канал", "Channel"),
    ("bulk_add", "Добавить агентов", "Add agents"),
    (
        "bulk_line_error",
        "Строка {line}: нужно «телефон имя_сессии»",
        "Line {line}: expected “phone session_name”",
    ),
    ("bulk_added", "Добавлено: {count}", "Added: {count}"),
    ("chart_title", "Отправлено по часам", "Sent per hour"),
    (
        "chart_empty",
        "Пока ничего не отправлено.",
        "Nothing sent yet.",
    ),
    ("no_agents", "Агентов нет.", "No agents."),
    ("events_title", "События агентов", "Agent events"),
    ("events_empty", "Событий нет.", "No events."),
    (
        "event_flood_wait",
        "FloodWait {seconds} с",
        "Flood wait {seconds} s",
    ),
    ("event_peer_flood", "PeerFlood", "PeerFlood"),
    ("event_dead", "Сессия недействительна", "Session dead"),
    ("event_reconnected", "Переподключён", "Reconnected"),
    (
        "undelivered_title",
        "Недоставленные сообщения",
        "Undelivered messages",
    ),
    (
        "undelivered_empty",
        "Всё доставлено.",
        "Nothing undelivered.",
    ),
    (
        "may_have_been_delivered",
        "возможно, доставлено — проверьте",
        "may have been delivered — please check",
    ),
    ("tasks_title", "Фоновые задачи", "Background tasks"),
    (
        "task_restarts",
        "перезапусков: {count}",
        "restarts: {count}",
    ),
    (
        "confirm_remove_agent",
        "Удалить агента {name} из канала {channel}?",
        "Remove agent {name} from channel {channel}?",
    ),
    ("vacancies_title", "История вакансий", "Vacancy history"),
    ("filter_status", "Статус", "Status"),
    ("filter_channel", "Канал", "Channel"),
    ("status_all", "Все", "All"),
    ("status_relevant", "Подходящие", "Relevant"),
    ("status_not_relevant", "Неподходящие", "Not relevant"),
    ("col_time", "Время", "Time"),
    ("col_source", "Источник", "Source"),
    ("col_text", "Текст", "Text"),
    ("col_matched", "Каналы", "Channels"),
    ("col_contacts", "Контакты", "Contacts"),
    ("conversations_title", "AI-диалоги", "AI conversations"),
    ("cluster_title", "Кластер", "Cluster"),
    (
        "cluster_single",
        "Один узел без общей базы: узлов и аренд сессий нет (кластер работает на PostgreSQL, см. README «Several nodes»).",
        "One node without a shared database: no nodes and no session leases (a cluster runs on PostgreSQL, see the README's \"Several nodes\").",
    ),
    ("cluster_nodes", "Узлы", "Nodes"),
    ("cluster_leases", "Аренды сессий", "Session leases"),
    ("col_node", "Узел", "Node"),
    ("col_alive", "Состояние", "State"),
    ("col_started", "Запущен", "Started"),
    ("col_heartbeat", "Последний сигнал", "Last heartbeat"),
    ("col_leases_held", "Сессий", "Sessions"),
    ("col_session", "Сессия", "Session"),
    ("col_holder", "Держит", "Held by"),
    ("col_token", "Токен", "Token"),
    ("col_held_for", "Держит уже", "Held for"),
    ("col_renewed", "Продлена", "Renewed"),
    ("col_expires_in", "Истекает через", "Expires in"),
    ("node_alive", "жив", "alive"),
    ("node_gone", "пропал", "gone"),
    ("lease_free", "свободна", "free"),
    (
        "no_conversations",
        "Пока ни одного AI-диалога",
        "No AI conversation yet",
    ),
    ("col_contact", "Контакт", "Contact"),
    ("col_phase", "Фаза", "Phase"),
    ("col_control", "Кто отвечает", "Who answers"),
    ("col_messages", "Сообщений", "Messages"),
    ("phase_discovery", "знакомство", "discovery"),
    ("phase_engagement", "вовлечение", "engagement"),
    ("phase_call_ready", "готов к созвону", "ready for a call"),
    ("phase_call_pending", "созвон назначается", "call pending"),
    ("phase_call_declined", "созвон отклонён", "call declined"),
    ("control_active", "AI", "AI"),
    ("control_handed_over", "оператор", "an operator"),
    (
        "control_opted_out",
        "контакт отказался",
        "the contact opted out",
    ),
    (
        "pending_suggestion",
        "Подсказка ждёт оператора",
        "A suggestion waits",
    ),
    (
        "send_suggestion",
        "Отправить подсказку",
        "Send the suggestion",
    ),
    (
        "suggestion_sent",
        "Подсказка отправлена",
        "The suggestion is on its way",
    ),
    (
        "release_ai",
        "Вернуть диалог AI",
        "Give the conversation back to the AI",
    ),
    (
        "ai_released",
        "Диалог снова ведёт AI",
        "The AI answers again",
    ),
    (
        "ai_history",
        "История, которую видит модель",
        "The history the model sees",
    ),
    (
        "ai_counts",
        "подсказок: {suggestions}, ответов AI: {replies}",
        "suggestions: {suggestions}, AI replies: {replies}",
    ),
    ("author_contact", "контакт", "contact"),
    ("author_ai", "AI", "AI"),
    ("author_operator", "оператор", "operator"),
    ("author_auto_response", "автоответ", "auto-response"),
    ("author_vacancy", "вакансия", "vacancy"),
    ("more", "Ещё", "More"),
    ("no_vacancies", "Вакансий пока нет.", "No vacancies yet."),
    ("logins_title", "Вход в Telegram", "Telegram logins"),
    (
        "main_login_needed",
        "Основной аккаунт не вошёл в Telegram: jobbot ждёт его, чтобы читать источники и публиковать вакансии.",
        "The main account is not logged in to Telegram: jobbot waits for it to read sources and post vacancies.",
    ),
    (
        "main_login_link",
        "Войти основным аккаунтом",
        "Log in the main account",
    ),
    ("doctor_title", "Диагностика настройки", "Setup doctor"),
    ("doctor_rerun", "Проверить снова", "Check again"),
    ("doctor_passed", "в порядке", "passed"),
    ("doctor_failed", "проблем", "problems"),
    ("doctor_skipped", "не проверено", "not checked"),
    ("doctor_col_result", "Итог", "Result"),
    ("doctor_col_item", "Что проверено", "Item"),
    ("doctor_col_detail", "Подробности", "Details"),
    ("doctor_col_fix", "Как исправить", "How to fix"),
    ("doctor_ok", "в порядке", "ok"),
    ("doctor_fail", "проблема", "problem"),
    ("doctor_skip", "пропущено", "skipped"),
    ("login_main", "Основной аккаунт", "Main account"),
    ("phone_missing", "телефон не указан", "phone missing"),
    ("login_start", "Начать вход", "Start login"),
    ("login_phone", "Номер телефона", "Phone number"),
    ("login_code", "Код из Telegram", "Code from Telegram"),
    ("login_password", "Пароль 2FA", "2FA password"),
    ("login_next", "Далее", "Next"),
    ("login_cancel", "Отменить", "Cancel"),
    ("login_signed_in", "Вход выполнен", "Signed in"),
    ("login_hint", "Подсказка", "Hint"),
    ("login_qr", "Войти по QR-коду", "Log in with a QR code"),
    ("login_qr_alt", "QR-код для входа", "Login QR code"),
    (
        "login_qr_scan",
        "Отсканируйте код приложением Telegram этого аккаунта: Настройки → Устройства → Подключить устройство. Код обновляется сам.",
        "Scan the code with this account's Telegram app: Settings → Devices → Link Desktop Device. The code renews itself.",
    ),
    (
        "code_sent_app",
        "Код отправлен в приложение Telegram на другом устройстве.",
        "The code was sent to the Telegram app on another device.",
    ),
    (
        "code_sent_sms",
        "Код отправлен по SMS.",
        "The code was sent by SMS.",
    ),
    (
        "code_sent_call",
        "Код продиктуют по телефону.",
        "The code is dictated in a phone call.",
    ),
    (
        "code_sent_missed_call",
        "Код — последние цифры номера пропущенного звонка.",
        "The code is the last digits of a missed call's number.",
    ),
    (
        "code_sent_email",
        "Код отправлен на почту для входа.",
        "The code was sent to the login e-mail.",
    ),
    (
        "code_sent_fragment",
        "Код отправлен по SMS через fragment.com.",
        "The code was sent by SMS through fragment.com.",
    ),
    (
        "code_sent_other",
        "Код отправлен способом, который jobbot не знает.",
        "The code was sent in a way jobbot does not know.",
    ),
    ("code_resend_sms", "Прислать по SMS", "Send it by SMS"),
    ("code_resend_call", "Позвонить", "Call me instead"),
    (
        "code_resend_missed_call",
        "Пропущенный звонок",
        "Missed call instead",
    ),
    (
        "code_resend_app",
        "Прислать в приложение",
        "Send it to the app",
    ),
    (
        "code_resend_email",
        "Прислать на почту",
        "Send it by e-mail",
    ),
    (
        "code_resend_fragment",
        "Прислать через fragment.com",
        "Send it through fragment.com",
    ),
    ("code_resend_other", "Прислать иначе", "Send it another way"),
    ("login_idle", "Вход не начат", "No login in progress"),
    ("agent_login", "Войти", "Log in"),
    (
        "login_pause_first",
        "Сессия занята: поставьте агента на паузу и повторите",
        "The session is in use: pause the agent and try again",
    ),
];

/// The message of a refused value in `lang`.
pub fn reason_message(reason: &Reason, lang: Lang) -> String {
    let ru = lang == Lang::Ru;
    let pick = |ru_text: String, en_text: String| if ru { ru_text } else { en_text };
    match reason {
        Reason::Config(kind, english) => match (lang, kind) {
            (Lang::En, _) | (_, ProblemKind::Other) => english.clone(),
            (Lang::Ru, kind) => config_message_ru(kind),
        },
        Reason::Required => t(lang, "err_required").to_owned(),
        Reason::Length { min, max } => pick(
            format!("Нужно от {min} до {max} символов"),
            format!("must be {min} to {max} characters"),
        ),
        Reason::Range { min, max } => pick(
            format!("Нужно целое число от {min} до {max}"),
            format!("must be a whole number from {min} to {max}"),
        ),
        Reason::Temperature => pick(
            "Нужно число от 0 до 2".to_owned(),
            "must be a number from 0 to 2".to_owned(),
        ),
        Reason::OneOf(words) => pick(
            format!("Допустимо: {}", words.join(", ")),
            format!("must be one of: {}", words.join(", ")),
        ),
        Reason::NotRevision => pick(
            "Это не ревизия конфигурации (16 шестнадцатеричных цифр)".to_owned(),
            "is not a configuration revision (16 hex digits)".to_owned(),
        ),
        Reason::NotSessionName => t(lang, "err_session").to_owned(),
        Reason::AlreadyAgent => pick(
            "Эта сессия уже агент канала".to_owned(),
            "this session is already an agent of the channel".to_owned(),
        ),
        Reason::ChannelExists => pick(
            "Канал с таким ID уже есть".to_owned(),
            "a channel with this id exists".to_owned(),
        ),
        Reason::IdFixed => pick(
            "ID канала нельзя изменить".to_owned(),
            "a channel's id cannot be changed".to_owned(),
        ),
        Reason::Json(detail) => pick(format!("Неверный JSON: {detail}"), detail.clone()),
        Reason::Query(detail) => pick(
            format!("Неверные параметры запроса: {detail}"),
            detail.clone(),
        ),
        Reason::Text(text) => text.clone(),
    }
}

fn config_message_ru(kind: &ProblemKind) -> String {
    match kind {
        ProblemKind::Required => "Обязательное поле".to_owned(),
        ProblemKind::NotChannelId => {
            "Нужен ID канала или супергруппы в формате Bot API: -100 и цифры".to_owned()
        }
        ProblemKind::NotSource => {
            "Нужен @username, ссылка t.me/… или числовой ID (например, -1001234567890)".to_owned()
        }
        ProblemKind::NotKeyword { detail } => format!("Неверное ключевое слово: {detail}"),
        ProblemKind::CrmGroupRequired => {
            "CRM включена — нужен ID её форум-супергруппы (-100…)".to_owned()
        }
        ProblemKind::CrmAgentRequired => t(Lang::Ru, "err_crm_agents").to_owned(),
        ProblemKind::LegacyAgentIncomplete { present } => {
            format!("Не заполнено: без этого поля старое {present} не станет агентом")
        }
        ProblemKind::TemplateEmpty => "Шаблон пуст, а автоответ включён".to_owned(),
        ProblemKind::NotTemplate { detail } => format!("Ошибка в шаблоне: {detail}"),
        ProblemKind::NotInviteLink => {
            "Нужна ссылка-приглашение: t.me/+ХЕШ или t.me/joinchat/ХЕШ".to_owned()
        }
        ProblemKind::NotPhone => t(Lang::Ru, "err_phone").to_owned(),
        ProblemKind::NotSessionName => t(Lang::Ru, "err_session").to_owned(),
        ProblemKind::MainSession => {
            "bot_session — сессия основного аккаунта; агенту нужна своя".to_owned()
        }
        ProblemKind::SessionTwice { first } => {
            format!("Эта сессия уже в списке (агент № {})", first + 1)
        }
        ProblemKind::NotProxy => "Нужен адрес socks5://[пользователь:пароль@]хост:порт (без пути, параметров и пробелов; @ и : в пароле — как %40 и %3A)".to_owned(),
        ProblemKind::ProxyMasked => {
            "Здесь скрытый пароль (***): введите пароль прокси заново".to_owned()
        }
        ProblemKind::AtLeastOne => "Должно быть не меньше 1".to_owned(),
        ProblemKind::DelayOrder { max } => {
            format!("Больше максимальной задержки ({max} с)")
        }
        ProblemKind::DelayTooLong => "Больше часа".to_owned(),
        ProblemKind::TooLong { max_utf16 } => {
            format!("Слишком длинно: Telegram принимает не больше {max_utf16} единиц UTF-16")
        }
        ProblemKind::ChannelIdTwice { first } => {
            format!("Такой ID уже у канала output_channels[{first}]")
        }
        ProblemKind::SessionPhoneElsewhere { there } => format!(
            "У этой сессии другой телефон в {there}: одна сессия — один аккаунт"
        ),
        ProblemKind::PhoneSessionElsewhere { session, there } => format!(
            "У этого телефона уже есть сессия «{session}» в {there}: у аккаунта одна сессия"
        ),
        ProblemKind::Other => String::new(),
    }
}

/// The top-level message of an API error in `lang`. Messages that carry names (not found, a
/// state conflict) keep their English words in Russian too, after a Russian lead.
pub fn error_message(error: &ApiError, lang: Lang) -> String {
    if lang == Lang::En {
        return error.to_string();
    }
    match error {
        ApiError::Invalid(_) => "Неверные данные: исправьте отмеченные поля".to_owned(),
        ApiError::Rejected(_) => "Изменение отклонено: исправьте отмеченные поля".to_owned(),
        ApiError::Unauthorized => "Нужен вход".to_owned(),
        ApiError::Forbidden(_) => {
            "Запрос с cookie сессии должен нести заголовок X-CSRF-Token этой сессии".to_owned()
        }
        ApiError::NotFound(detail) => format!("Не найдено: {detail}"),
        ApiError::Conflict { .. } => t(Lang::Ru, "conflict").to_owned(),
        ApiError::UpgradeRequired => "Этот адрес работает по WebSocket".to_owned(),
        ApiError::FileInvalid(_) => {
            "Файл конфигурации на диске не загружается; исправьте его перед сохранением".to_owned()
        }
        ApiError::StateConflict(detail) => format!("Сейчас нельзя: {detail}"),
        ApiError::TooManyRequests {
            retry_after_seconds,
        } => format!("Слишком много попыток; повторите через {retry_after_seconds} с"),
        ApiError::RequestTimeout => "Тело запроса не пришло вовремя".to_owned(),
        ApiError::PayloadTooLarge { limit } => format!("Тело запроса больше {limit} байт"),
        ApiError::Unavailable(_) => "Сервер занят; повторите чуть позже".to_owned(),
        ApiError::Internal(_) => "Внутренняя ошибка".to_owned(),
    }
}

/// The label `key` in `lang`; the key itself when the table lacks it (a test keeps every key
/// the pages use in the table).
pub fn t(lang: Lang, key: &str) -> &'static str {
    LABELS
        .iter()
        .find(|(known, _, _)| *known == key)
        .map(|(_, ru, en)| match lang {
            Lang::Ru => *ru,
            Lang::En => *en,
        })
        .unwrap_or_else(|| {
            debug_assert!(false, "no label {key:?}");
            ""
        })
}

/// The whole column of `lang` as a JSON object, for the pages' scripts.
pub fn labels_json(lang: Lang) -> String {
    let map: serde_json::Map<String, serde_json::Value> = LABELS
        .iter()
        .map(|(key, ru, en)| {
            let text = match lang {
                Lang::Ru => ru,
                Lang::En => en,
            };
            ((*key).to_owned(), serde_json::Value::from(*text))
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// A doctor's finding in `lang`: the item, what was found (a problem, a skip, or what passed)
/// and the fix. English is the report's own text; Russian is written here from the typed
/// values, never by translating the English.
pub fn doctor_texts(
    lang: Lang,
    finding: &jobbot_core::doctor::Finding,
) -> (String, String, String) {
    use jobbot_core::doctor::Verdict;
    if lang == Lang::En {
        let detail = match &finding.verdict {
            Verdict::Passed { detail } => detail.clone().unwrap_or_default(),
            Verdict::Failed { problem } => problem.to_string(),
            Verdict::Skipped { because } => because.to_string(),
        };
        return (
            finding.subject.to_string(),
            detail,
            finding.fix.clone().unwrap_or_default(),
        );
    }
    let detail = match &finding.verdict {
        Verdict::Passed { detail } => detail.clone().unwrap_or_default(),
        Verdict::Failed { problem } => doctor_problem_ru(problem),
        Verdict::Skipped { because } => doctor_skip_ru(because),
    };
    let fix = match &finding.verdict {
        Verdict::Failed { problem } => doctor_fix_ru(problem, &finding.subject),
        _ => String::new(),
    };
    (doctor_subject_ru(&finding.subject), detail, fix)
}

fn doctor_subject_ru(subject: &jobbot_core::doctor::Subject) -> String {
    use jobbot_core::doctor::Subject;
    match subject {
        Subject::ApiCredentials => "API_ID / API_HASH".to_owned(),
        Subject::Session {
            session,
            main: true,
        } => format!("сессия {session} (основной аккаунт)"),
        Subject::Session { session, .. } => format!("сессия {session}"),
        Subject::Proxy { session, proxy } => format!("прокси {session} ({proxy})"),
        Subject::Source { source } => format!("источник {source}"),
        Subject::OutputChannel { channel, chat } => {
            format!("выходной канал {chat} канала {channel}")
        }
        Subject::CrmGroup { channel, group } => format!("CRM-группа {group} канала {channel}"),
        Subject::CrmAgent {
            channel,
            group,
            session,
        } => format!("агент {session} в CRM-группе {group} канала {channel}"),
        Subject::AiProvider { channel, provider } => {
            format!("AI-провайдер {provider} канала {channel}")
        }
    }
}

fn dead_reason_ru(reason: jobbot_core::telegram::DeadReason) -> &'static str {
    use jobbot_core::telegram::DeadReason;
    match reason {
        DeadReason::Unregistered => "ключ сессии не зарегистрирован (выход на другом устройстве)",
        DeadReason::Revoked => "сессия отозвана",
        DeadReason::Deactivated => "аккаунт удалён",
        DeadReason::Banned => "аккаунт заблокирован",
        DeadReason::Frozen => "аккаунт заморожен",
        DeadReason::AuthKeyDuplicated => {
            "сессию использовали из двух подключений сразу, и Telegram её аннулировал"
        }
        DeadReason::AuthKeyInvalid => "Telegram больше не знает ключ сессии",
    }
}

fn doctor_problem_ru(problem: &jobbot_core::doctor::Problem) -> String {
    use jobbot_core::doctor::{Problem, invisible};
    use jobbot_core::telegram::PeerKind;
    match problem {
        Problem::ApiCredentialsMissing { missing } => {
            format!("{}: не заданы или неверны", missing.join(", "))
        }
        Problem::SessionMissing => "нет файла сессии".to_owned(),
        Problem::SessionNotLoggedIn => "вход не выполнен".to_owned(),
        Problem::SessionDead { reason } => {
            format!("Telegram её не принимает: {}", dead_reason_ru(*reason))
        }
        Problem::SessionBusy => "занята другим процессом jobbot".to_owned(),
        Problem::SessionUnreachable { message } => format!("не удалось подключиться: {message}"),
        Problem::ProxyUnreachable { message } => format!("недоступен: {message}"),
        Problem::SourceNotJoined | Problem::OutputNotJoined => {
            "основной аккаунт в нём не состоит".to_owned()
        }
        Problem::SourceUnreadable { error } | Problem::OutputUnreachable { error } => {
            format!("основной аккаунт его не видит ({})", invisible(error))
        }
        Problem::OutputCannotPost { .. } => "основному аккаунту нельзя там публиковать".to_owned(),
        Problem::NotAForum {
            kind: PeerKind::Channel,
        } => "это канал-рассылка, а не форум".to_owned(),
        Problem::NotAForum { .. } => "не форум (темы выключены)".to_owned(),
        Problem::CrmGroupUnreachable { error } => {
            format!("ни один аккаунт канала её не видит ({})", invisible(error))
        }
        Problem::AgentNotMember => "не участник".to_owned(),
        Problem::AgentCannotCreateTopics => "участник, но не может создавать темы".to_owned(),
        Problem::CheckFailed { error } => format!("проверка не удалась: {error}"),
        Problem::AiKeyMissing { variable } => format!("нет API-ключа: {variable} не задан"),
    }
}

fn doctor_skip_ru(skip: &jobbot_core::doctor::Skip) -> String {
    use jobbot_core::doctor::Skip;
    match skip {
        Skip::AccountUnavailable { session } => format!("не проверено: {session} недоступен"),
        Skip::ProxyUnreachable => "не проверено: прокси не отвечает".to_owned(),
        Skip::Paused => "не проверено: агент на паузе".to_owned(),
        Skip::ElsewhereInCluster => "не проверено здесь: сессию держит другой узел".to_owned(),
        Skip::InviteLink => {
            "не проверено: в закрытый источник jobbot вступит по ссылке при запуске".to_owned()
        }
        Skip::Simulator => "не нужны для симулятора".to_owned(),
        Skip::NoApiCredentials => "не проверено: нет API_ID / API_HASH".to_owned(),
        Skip::NotAForum => "участник; темы проверим, когда группа станет форумом".to_owned(),
    }
}

fn doctor_fix_ru(
    problem: &jobbot_core::doctor::Problem,
    subject: &jobbot_core::doctor::Subject,
) -> String {
    use jobbot_core::doctor::{Problem, Subject};
    use jobbot_core::telegram::{DeadReason, PeerKind};
    let session = match subject {
        Subject::Session { session, .. }
        | Subject::Proxy { session, .. }
        | Subject::CrmAgent { session, .. } => session.to_string(),
        _ => jobbot_core::ids::SessionName::MAIN.to_owned(),
    };
    let chat = match subject {
        Subject::Source { source } => source.clone(),
        Subject::OutputChannel { chat, .. } => chat.to_string(),
        Subject::CrmGroup { group, .. } | Subject::CrmAgent { group, .. } => group.to_string(),
        _ => String::new(),
    };
    let login = format!(
        "выполните вход: `jobbot login {session} --phone +…` (или на странице «Вход в Telegram»)"
    );
    match problem {
        Problem::ApiCredentialsMissing { missing } => format!(
            "задайте {} в окружении или в DATA_DIR/.env (их выдают на https://my.telegram.org → API development tools)",
            missing.join(" и ")
        ),
        Problem::SessionMissing | Problem::SessionNotLoggedIn => login,
        Problem::SessionDead {
            reason: DeadReason::Banned | DeadReason::Deactivated,
        } => "аккаунт не вернуть: замените его другим (и его session_name)".to_owned(),
        Problem::SessionDead { .. } => format!("сессия потеряна; {login}"),
        Problem::SessionBusy => "сессию держит другой процесс jobbot: остановите его или откройте страницу «Диагностика» в его веб-интерфейсе".to_owned(),
        Problem::SessionUnreachable { .. } => {
            "проверьте сеть (и прокси агента) и запустите проверку снова".to_owned()
        }
        Problem::ProxyUnreachable { .. } => format!(
            "запустите прокси или исправьте прокси {session} в агентах его канала (socks5://[user:password@]host:port)"
        ),
        Problem::SourceNotJoined => format!(
            "вступите в {chat} основным аккаунтом (jobbot получает посты только из чатов, где состоит)"
        ),
        Problem::SourceUnreadable { .. } => format!(
            "проверьте адрес источника; в закрытый канал основной аккаунт должен вступить (добавьте его или укажите источник ссылкой-приглашением t.me/+…): {chat}"
        ),
        Problem::OutputNotJoined => format!(
            "добавьте основной аккаунт в {chat} администратором с правом публиковать сообщения"
        ),
        Problem::OutputCannotPost {
            kind: PeerKind::Channel,
        } => format!(
            "сделайте основной аккаунт администратором {chat} с правом публиковать сообщения"
        ),
        Problem::OutputCannotPost { .. } => format!(
            "разрешите основному аккаунту писать в {chat} (снимите ограничение или сделайте его администратором)"
        ),
        Problem::OutputUnreachable { .. } => format!(
            "проверьте telegram_id канала и добавьте основной аккаунт в {chat} администратором"
        ),
        Problem::NotAForum {
            kind: PeerKind::Channel,
        } => format!(
            "{chat} — канал-рассылка: CRM-группой (crm_group_id) должна быть супергруппа с включёнными темами"
        ),
        Problem::NotAForum { .. } => format!(
            "включите темы в настройках {chat} (Изменить → Темы): CRM ведёт по теме на каждый контакт"
        ),
        Problem::CrmGroupUnreachable { .. } => format!(
            "проверьте crm_group_id канала и добавьте основной аккаунт в {chat}"
        ),
        Problem::AgentNotMember => format!(
            "добавьте {session} в {chat} (или задайте каналу crm_invite_link, чтобы агенты вступали по ней)"
        ),
        Problem::AgentCannotCreateTopics => format!(
            "сделайте {session} администратором {chat} с правом управлять темами"
        ),
        Problem::CheckFailed { .. } => "запустите проверку позже ещё раз".to_owned(),
        Problem::AiKeyMissing { variable } => format!(
            "задайте {variable} (API-ключ провайдера) в окружении или в DATA_DIR/.env и перезапустите jobbot, либо выберите в настройках AI канала другого провайдера или ручной режим"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_and_has_both_languages() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, ru, en) in LABELS {
            assert!(seen.insert(*key), "{key} twice");
            assert!(
                !ru.is_empty() && !en.is_empty(),
                "{key} lacks a translation"
            );
        }
    }

    #[test]
    fn every_key_the_scripts_use_is_in_the_table() {
        // The scripts call `t('key')`; a missing key would show nothing.
        let scripts = [
            include_str!("pages/assets/common.js"),
            include_str!("pages/assets/channels.js"),
            include_str!("pages/assets/channel_form.js"),
            include_str!("pages/assets/agents.js"),
            include_str!("pages/assets/vacancies.js"),
            include_str!("pages/assets/logins.js"),
            include_str!("pages/assets/login_flow.js"),
            include_str!("pages/assets/conversations.js"),
            include_str!("pages/assets/cluster.js"),
        ];
        for script in scripts {
            for (at, _) in script.match_indices("t('") {
                // `t(` itself, not the end of `split(` or `text(`.
                let before = script[..at].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' || before == '.' {
                    continue;
                }
                let key = script[at + 3..].split('\'').next().unwrap_or_default();
                // `t('state_' + state.key)`: a prefix of several keys.
                let prefix = script[at + 3 + key.len()..].starts_with("' +");
                assert!(
                    LABELS
                        .iter()
                        .any(|(known, _, _)| *known == key || (prefix && known.starts_with(key))),
                    "a script uses the label {key:?}, which the table lacks"
                );
            }
        }
    }

    #[test]
    fn the_seed_labels_are_the_russian_ones() {
        assert_eq!(t(Lang::Ru, "field_crm_enabled"), "CRM Функциональность");
        assert_eq!(t(Lang::Ru, "add_agent"), "Добавить агента");
        assert_eq!(t(Lang::En, "add_agent"), "Add agent");
    }
}
