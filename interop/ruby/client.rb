# AWS SDK for Ruby client for the interop suite. Credentials come only from the SDK's default
# chain (Aws::CredentialProviderChain; here Aws::ECSCredentials reading
# AWS_CONTAINER_CREDENTIALS_FULL_URI and the authorization token). Debian packages aws-sdk-core,
# which carries the STS client, but no DynamoDB client: only the identity scenario runs.
#
#   ruby client.rb identity        -> {"arn": "..."}
require 'json'
require 'stringio'
require 'aws-sdk-core'

# The chain reports only that no credentials were found; the ECS provider says why in a warning
# ("Error retrieving ECS Credentials: ..."). Keep the warnings to name the cause.
warnings = StringIO.new
$stderr = warnings
begin
  raise ArgumentError, "only the identity scenario: #{ARGV[0]}" unless ARGV[0] == 'identity'

  sts = Aws::STS::Client.new(region: ENV.fetch('AWS_REGION'), endpoint: ENV.fetch('AWS_ENDPOINT_URL'))
  result = JSON.generate({ arn: sts.get_caller_identity.arn })
  $stderr = STDERR
  puts result
rescue StandardError => e
  $stderr = STDERR
  ecs = warnings.string.lines.grep(/ECS/).last
  cause = ecs ? " (container provider: #{ecs.strip})" : ''
  warn "#{e.class}: #{e.message}#{cause}".gsub(/\s+/, ' ')
  exit 1
end
