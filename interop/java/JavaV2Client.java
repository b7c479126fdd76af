// AWS SDK for Java v2 client for the interop suite. Credentials come only from the SDK's default
// chain (DefaultCredentialsProvider; here its ContainerCredentialsProvider reading
// AWS_CONTAINER_CREDENTIALS_FULL_URI and the authorization token). The SDK is the shaded copy
// inside a PyPI wheel (see interop/toolchains.py), so its packages start with smfs.shaded.
//
//   java JavaV2Client identity        -> {"arn": "..."}
//   java JavaV2Client movies TABLE    -> {"titles": [...]} after create, 3 puts, scan

import java.net.URI;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import smfs.shaded.software.amazon.awssdk.auth.credentials.ContainerCredentialsProvider;
import smfs.shaded.software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import smfs.shaded.software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import smfs.shaded.software.amazon.awssdk.regions.Region;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.DynamoDbClient;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.AttributeDefinition;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.AttributeValue;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.BillingMode;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.KeySchemaElement;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.KeyType;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.ResourceNotFoundException;
import smfs.shaded.software.amazon.awssdk.services.dynamodb.model.ScalarAttributeType;
import smfs.shaded.software.amazon.awssdk.services.sts.StsClient;

public class JavaV2Client {
    public static void main(String[] args) {
        URI endpoint = URI.create(System.getenv("AWS_ENDPOINT_URL"));
        Region region = Region.of(System.getenv("AWS_REGION"));
        // The jar carries several HTTP clients and no service-loader entries: name one.
        try (DefaultCredentialsProvider credentials = DefaultCredentialsProvider.builder().build()) {
            if (args[0].equals("identity")) {
                try (StsClient sts = StsClient.builder().region(region).endpointOverride(endpoint)
                        .credentialsProvider(credentials).httpClient(UrlConnectionHttpClient.create()).build()) {
                    System.out.println("{\"arn\": \"" + sts.getCallerIdentity().arn() + "\"}");
                }
            } else {
                try (DynamoDbClient db = DynamoDbClient.builder().region(region).endpointOverride(endpoint)
                        .credentialsProvider(credentials).httpClient(UrlConnectionHttpClient.create()).build()) {
                    System.out.println(movies(db, args[1]));
                }
            }
        } catch (Exception e) {
            // The chain says only "Failed to load credentials from metadata service"; ask the
            // container provider it used for the cause, so the report can name it.
            String cause = "";
            try (ContainerCredentialsProvider container = ContainerCredentialsProvider.builder().build()) {
                container.resolveCredentials();
            } catch (Exception inner) {
                cause = " (container provider: " + describe(inner) + ")";
            }
            System.err.println(describe(e) + cause);
            System.exit(1);
        }
    }

    /** The exception and its causes, on one line. */
    static String describe(Throwable e) {
        StringBuilder line = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            line.append(line.length() == 0 ? "" : " caused by ").append(t.getClass().getSimpleName())
                .append(": ").append(t.getMessage());
        }
        return line.toString().replace('\n', ' ');
    }

    static String movies(DynamoDbClient db, String table) {
        try {
            db.deleteTable(b -> b.tableName(table));
        } catch (ResourceNotFoundException e) {
            // Not there yet.
        }
        db.createTable(b -> b.tableName(table)
            .keySchema(KeySchemaElement.builder().attributeName("title").keyType(KeyType.HASH).build())
            .attributeDefinitions(AttributeDefinition.builder().attributeName("title")
                .attributeType(ScalarAttributeType.S).build())
            .billingMode(BillingMode.PAY_PER_REQUEST));
        for (String title : new String[] {"Inception", "The Matrix", "Interstellar"}) {
            db.putItem(b -> b.tableName(table).item(Map.of("title", AttributeValue.builder().s(title).build())));
        }
        List<String> titles = new ArrayList<>();
        for (Map<String, AttributeValue> item : db.scan(b -> b.tableName(table)).items()) {
            titles.add(item.get("title").s());
        }
        Collections.sort(titles);
        StringBuilder json = new StringBuilder("{\"titles\": [");
        for (int i = 0; i < titles.size(); i++) {
            json.append(i == 0 ? "" : ", ").append('"').append(titles.get(i)).append('"');
        }
        return json.append("]}").toString();
    }
}
